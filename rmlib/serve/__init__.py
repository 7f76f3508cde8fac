"""HTTP servers: ``rmlib serve MODEL`` (FastAPI + uvicorn). A reward model's batched scores for RL loops
(OpenRLHF's ``/get_reward``, plain ``/score``); a causal LM's (a Pairwise Justifier's) OpenAI chat
completions (``/v1/chat/completions``)."""

from rmlib.serve.app import RewardService, ServeOptions, create_app, create_chat_app, serve
from rmlib.serve.batcher import Batcher
from rmlib.serve.chat import ChatError, Generator
from rmlib.serve.protocol import QueryEncoder, RequestError

__all__ = ["Batcher", "ChatError", "Generator", "QueryEncoder", "RequestError", "RewardService", "ServeOptions", "create_app",
           "create_chat_app", "serve"]
