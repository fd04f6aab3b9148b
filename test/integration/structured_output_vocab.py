#!/usr/bin/env python3
"""structured_output_vocab - structured output end to end through the OpenAI SDK on
tiny Qwen3 and Llama 3 models with their real vocabularies
(151,936 / 128,256 tokens) and random weights: every output validates
(test/integration/pylib/structured.py says how)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import structured  # noqa: E402

structured.main("vocab")
