"""The paper's Figure 4: (left) each image beside its top-k classes as bars; (right) nearest neighbours.

    classify.py IMAGE... --plot out.png                      # left
    visualize.py neighbours --gallery train -o out.png      # right
"""
import matplotlib

matplotlib.use('Agg')                    # files only: no display needed
import matplotlib.pyplot as plt          # noqa: E402  (after choosing the backend)
import numpy as np                       # noqa: E402
from PIL import Image                    # noqa: E402

from files import printable              # noqa: E402

COLUMNS = 4              # images per row of the figure
THUMBNAIL = 256          # longer side of each image as drawn, pixels


def thumbnail(path):
    with Image.open(path) as image:
        image = image.convert('RGB')
        image.thumbnail((THUMBNAIL, THUMBNAIL))
        return np.asarray(image)


def predictions_figure(results, path):
    """results: [{image, top: [{class, score}]}] (classify.py's); writes one PNG with a panel for each:
    the image, and under it the top classes as bars, the highest on top."""
    n = len(results)
    cols = min(COLUMNS, n)
    rows = -(-n // cols)
    figure, axes = plt.subplots(2 * rows, cols, figsize=(3.2 * cols, 4.6 * rows), squeeze=False,
                                gridspec_kw={'height_ratios': [3, 2] * rows})
    for ax in axes.flat:
        ax.axis('off')
    for i, result in enumerate(results):
        r, c = divmod(i, cols)
        picture, bars = axes[2 * r, c], axes[2 * r + 1, c]
        picture.imshow(thumbnail(result['image']))
        picture.set_title(printable(result['image']).rsplit('/', 1)[-1], fontsize=8)   # names not UTF-8: \xNN
        top = result['top']
        names = [t['class'].split(',')[0][:28] for t in top][::-1]
        scores = [t['score'] for t in top][::-1]
        bars.axis('on')
        bars.barh(range(len(top)), scores, color='tab:red')
        bars.set_yticks(range(len(top)), names, fontsize=8)
        bars.set_xlim(0, 1)
        bars.tick_params(axis='x', labelsize=7)
        for side in ('top', 'right'):
            bars.spines[side].set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def neighbours_figure(rows, path, size=1.6):
    """The paper's Figure 4 (right): rows [(query picture, [(picture, distance), ...])], uint8 RGB arrays;
    one row per query, the query first, then its neighbours nearest first, each with its distance."""
    cols = 1 + max(len(found) for _, found in rows)
    figure, axes = plt.subplots(len(rows), cols, figsize=(size * cols, size * 1.15 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.axis('off')
    for r, (query, found) in enumerate(rows):
        axes[r, 0].imshow(query)
        axes[r, 0].set_title('query', fontsize=8, fontweight='bold')
        for c, (picture, distance) in enumerate(found, 1):
            axes[r, c].imshow(picture)
            axes[r, c].set_title(f'{distance:.1f}', fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
