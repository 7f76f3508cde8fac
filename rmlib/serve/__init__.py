"""An HTTP reward server for RL loops: ``rmlib serve MODEL`` (FastAPI + uvicorn, batched)."""

from rmlib.serve.app import ServeOptions, create_app, serve
from rmlib.serve.batcher import Batcher
from rmlib.serve.protocol import QueryEncoder, RequestError

__all__ = ["Batcher", "QueryEncoder", "RequestError", "ServeOptions", "create_app", "serve"]
