"""Kept for old imports: the paintings are a style task's asset, see piggyjax.tasks.paintings."""
import urllib.request  # noqa: F401  (tests patch styles.urllib.request.urlopen)

from piggyjax.tasks.paintings import (ALIASES, EXTENSIONS, STANDINS, STYLES, cache_dir,  # noqa: F401
                                      download_style, find_style_image, sha256, standin_style)
