"""The documentation's house rules: the README's code map names every root module, every relative link in
README.md and docs/*.md reaches a file (and a heading, for an anchor), and the README stays a few screens."""
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / 'README.md'
README_MAX_LINES = 300

FENCE = re.compile(r'^\s*(```|~~~)')
LINK = re.compile(r'!?\[[^\]]*\]\(([^()\s]+)(?:\s+"[^"]*")?\)')
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')


def prose_lines(text):
    """The lines of a Markdown text outside its fenced code blocks."""
    inside = False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            yield line


def section(text, title):
    """The lines under the heading `title` (any level), up to the next heading of that level or above."""
    lines, level = [], None
    for line in prose_lines(text):
        m = HEADING.match(line)
        if m and level is not None and len(m.group(1)) <= level:
            break
        if level is not None:
            lines.append(line)
        if m and m.group(2).strip().lower() == title.lower():
            level = len(m.group(1))
    return lines


def code_map_names(readme_text):
    """The backticked names in the first column of the table under the README's 'Code map' heading."""
    names = set()
    for line in section(readme_text, 'Code map'):
        cells = line.strip().strip('|').split('|')
        if line.lstrip().startswith('|') and cells:
            names.update(re.findall(r'`([^`]+)`', cells[0]))
    return names


def missing_from_code_map(modules, readme_text):
    """The modules (file names such as 'train.py') that the README's code map does not name, sorted."""
    named = code_map_names(readme_text)
    return sorted(m for m in modules if m not in named)


def root_modules():
    return sorted(p.name for p in REPO.glob('*.py'))


def slug(heading):
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)      # a link in a heading keeps its text
    text = text.strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)                          # backticks, brackets, dots, commas, ...
    return text.replace(' ', '-')


def anchors(path):
    """The anchors of a Markdown file's headings, GitHub's way (a repeated one gets -1, -2, ...)."""
    seen, found = {}, set()
    for line in prose_lines(path.read_text(encoding='utf-8')):
        m = HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            found.add(base if n == 0 else f'{base}-{n}')
            seen[base] = n + 1
    return found


def broken_links(path):
    """['file: target (why)'] for each relative link of a Markdown file that reaches no file or no heading."""
    broken = []
    for line in prose_lines(path.read_text(encoding='utf-8')):
        line = re.sub(r'`[^`]*`', '', line)                        # inline code is not a link
        for target in LINK.findall(line):
            if re.match(r'^[a-z][a-z0-9+.-]*:', target, re.I):     # http:, https:, mailto:, ...
                continue
            file_part, _, anchor = target.partition('#')
            where = (path.parent / file_part).resolve() if file_part else path
            name = f'{path.relative_to(REPO)}: {target}'
            if not where.exists():
                broken.append(f'{name} (no such file)')
            elif anchor and where.suffix == '.md' and anchor not in anchors(where):
                broken.append(f'{name} (no such heading in {where.relative_to(REPO)})')
    return broken


def doc_files():
    return [README] + sorted((REPO / 'docs').glob('*.md'))


def test_the_code_map_names_every_root_module():
    assert missing_from_code_map(root_modules(), README.read_text(encoding='utf-8')) == []


def test_a_module_missing_from_the_code_map_is_reported():
    readme = README.read_text(encoding='utf-8')
    assert missing_from_code_map(root_modules() + ['made_up_module.py'], readme) == ['made_up_module.py']
    assert 'train.py' in code_map_names(readme)
    table = '# x\n\n## Code map\n\n| module | job |\n|---|---|\n| `a.py`, `b.py` | both |\n\n## Next\n\n| `c.py` | |\n'
    assert missing_from_code_map(['a.py', 'b.py', 'c.py'], table) == ['c.py']     # only the code map's table counts


def test_relative_links_reach_a_file_and_a_heading():
    broken = [b for path in doc_files() for b in broken_links(path)]
    assert broken == []


def test_a_broken_link_or_anchor_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], 'REPO', tmp_path)
    (tmp_path / 'other.md').write_text('# Other page\n\n## A `code` heading (with parens)\n')
    page = tmp_path / 'page.md'
    page.write_text('# Page\n\n[ok](other.md#a-code-heading-with-parens) [self](#page) [web](https://example.com)\n'
                    '[gone](missing.md) [bad anchor](other.md#nowhere)\n\n```\n[in code](nowhere.md)\n```\n')
    assert broken_links(page) == ['page.md: missing.md (no such file)',
                                  'page.md: other.md#nowhere (no such heading in other.md)']


def test_every_docs_page_has_a_title_and_a_summary():
    for path in sorted((REPO / 'docs').glob('*.md')):
        lines = [line for line in path.read_text(encoding='utf-8').splitlines() if line.strip()]
        assert lines and lines[0].startswith('# '), f'{path.name}: first line is not a title'
        assert len(lines) > 1 and not lines[1].startswith(('#', '```', '|')), f'{path.name}: no summary line'


def test_the_readme_stays_a_few_screens():
    n = len(README.read_text(encoding='utf-8').splitlines())
    assert n < README_MAX_LINES, f'README.md has {n} lines: move detail into docs/'
