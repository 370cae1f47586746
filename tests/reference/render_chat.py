"""transformers' own `apply_chat_template` on a conversation with tools: the reference our
rendering of tools, assistant tool calls and tool results is checked against.

Usage: render_chat.py MODEL_DIR  (stdin: {"messages": [...], "tools": [...] or null}) prints the
rendered prompt (with the generation prompt).
"""

import json
import os
import sys

os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
from transformers import AutoTokenizer  # noqa: E402

request = json.load(sys.stdin)
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
sys.stdout.write(tokenizer.apply_chat_template(request["messages"], tools=request.get("tools"), tokenize=False,
                                               add_generation_prompt=True))
