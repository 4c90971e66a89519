"""Pillow compatibility for xpra 3.1.5 (Debian sid).

xpra 3.1.5 resizes window icons and clipboard images with
PIL.Image.ANTIALIAS, a name Pillow 10 removed (it was always LANCZOS). Without
it the server logs a traceback and sends no window icons.

Loaded from pukaipu_pil_compat.pth at every interpreter start, this only adds
a meta-path finder; PIL itself is not imported until a program imports it, and
then Image.ANTIALIAS is set right after the module has run. Remove this file
(and the .pth) once the rootfs has an xpra that no longer uses the name.
"""
import sys


class _AddAntialias:
    def find_spec(self, name, path=None, target=None):
        if name != "PIL.Image":
            return None
        sys.meta_path.remove(self)  # once, and never for our own lookup below
        import importlib.util
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            if not hasattr(module, "ANTIALIAS"):
                module.ANTIALIAS = module.Resampling.LANCZOS

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _AddAntialias())
