"""The house rules: project modules import each other one way (no circles), and only at the top."""
import ast

from conftest import REPO

MODULES = {p.stem: p for p in REPO.glob('*.py')}


def imports(path):
    """[(module imported, line, at top level?)] of the project modules imported by path."""
    tree = ast.parse(path.read_text(), str(path))
    top = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name.split('.')[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module.split('.')[0]]
        found += [(n, node.lineno, id(node) in top) for n in names if n in MODULES]
    return found


def graph():
    return {name: sorted({m for m, _, _ in imports(path)} - {name}) for name, path in MODULES.items()}


def test_project_modules_are_imported_at_the_top_of_a_file_only():
    hidden = [f'{name}.py:{line} imports {m} inside a function or block'
              for name, path in MODULES.items() for m, line, at_top in imports(path) if not at_top]
    assert not hidden, '\n'.join(hidden)


def test_no_import_circles():
    edges, circles = graph(), []
    state = {}

    def visit(node, path):
        state[node] = 'open'
        for nxt in edges[node]:
            if state.get(nxt) == 'open':
                circles.append(' -> '.join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 'done'

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not circles, 'import circles: ' + '; '.join(circles)


def test_the_checker_sees_circles_and_hidden_imports(tmp_path, monkeypatch):
    """The two rules above can fail: a made-up pair of modules breaks both."""
    (tmp_path / 'one.py').write_text('import two\n')
    (tmp_path / 'two.py').write_text('def f():\n    import one\n')
    monkeypatch.setattr(__import__(__name__), 'MODULES', {p.stem: p for p in tmp_path.glob('*.py')})
    assert graph() == {'one': ['two'], 'two': ['one']}
    assert [(m, at_top) for m, _, at_top in imports(tmp_path / 'two.py')] == [('one', False)]


def test_the_scripts_are_at_the_top_and_the_model_imports_no_project_module():
    edges = graph()
    assert edges['alexnet'] == ['quiet'] and edges['quiet'] == [] and edges['errors'] == []
    assert edges['datasets'] == ['errors'] and edges['files'] == ['errors']
    importers = {m for deps in edges.values() for m in deps}
    for script in ('train', 'test', 'classify', 'export', 'bench'):
        assert script not in importers, f'{script}.py is a command, not a library: nothing imports it'
