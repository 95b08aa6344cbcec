"""The one place the extension imports the engine from.

Installed extension: ``build.py`` bundles the engine as the sub-package ``hrn_blender/engine``, so
it never lands on Blender's global ``sys.path`` (another extension may ship its own ``engine``).
Development checkout: ``engine/`` sits beside ``hrn_blender/`` at the repository root and is
importable as a top-level package. Only light, bpy-free modules are imported here (numpy, and
Pillow for photos; ``cli`` imports the pipeline only when it runs, which only the headless
front end does); torch is never imported into Blender's process.
"""
from pathlib import Path

_BUNDLED = Path(__file__).resolve().parent / "engine"

if (_BUNDLED / "__init__.py").is_file():
    from .engine import cli, conventions, errors, progress, result  # noqa: F401
    from .engine.io import image_io  # noqa: F401
    ENGINE_PARENT = _BUNDLED.parent
else:
    from engine import cli, conventions, errors, progress, result  # noqa: F401
    from engine.io import image_io  # noqa: F401
    ENGINE_PARENT = Path(result.__file__).resolve().parent.parent
# ENGINE_PARENT: the folder to put on the child process' path so ``python -m engine`` finds
# this very engine.
