from . import bp
