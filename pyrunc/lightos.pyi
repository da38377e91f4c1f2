# For type checkers only: lightos hands out os's own functions and constants (PEP 562
# __getattr__), and `path` holds os.path's, so it is typed as os itself.
from os import *
from os import environ as environ
from os import path as path

def bind_container_names() -> None: ...
