#!/usr/bin/env python3
"""structured_output - structured output end to end through the OpenAI SDK on
stories260K (aggregated, and disaggregated prefill -> decode), the mock
engine, tool_choice required/named, bad specs as 400s: every output validates
(test/integration/pylib/structured.py says how)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import structured  # noqa: E402

structured.main("small")
