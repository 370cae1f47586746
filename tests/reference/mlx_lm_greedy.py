"""mlx-lm's greedy generation, the reference our engine must match token for token.

Usage: mlx_lm_greedy.py MODEL_DIR PROMPT MAX_TOKENS [--raw]
Prints JSON: the rendered prompt, its token ids, the generated token ids and the text.
With --raw the prompt is used as is; otherwise it is the user message of a chat.
"""

import json
import sys

from mlx_lm import load, stream_generate


def main() -> None:
    model_dir, prompt, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model, tokenizer = load(model_dir)
    if "--raw" not in sys.argv:
        messages = [{"role": "user", "content": prompt}]
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    bos = tokenizer.bos_token
    add_special = not (bos and prompt.startswith(bos))
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=add_special)
    tokens = []
    text = ""
    for response in stream_generate(model, tokenizer, prompt_ids, max_tokens=max_tokens):
        tokens.append(int(response.token))
        text += response.text
    print(json.dumps({"prompt": prompt, "prompt_ids": prompt_ids, "tokens": tokens, "text": text}))


if __name__ == "__main__":
    main()
