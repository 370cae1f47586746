"""mlx-lm's greedy generation, the reference our engine must match token for token.

Usage: mlx_lm_greedy.py MODEL_DIR PROMPT MAX_TOKENS [--raw] [--logprobs K] [--many]
Prints JSON: the rendered prompt, its token ids, the generated token ids and the text.
With --raw the prompt is used as is; otherwise it is the user message of a chat. With
--logprobs K also each token's log-probability and the K likeliest ids with theirs. With
--many PROMPT is a JSON list of prompts, each answered alone (the model loaded once), and the
output is the list of their results.
"""

import json
import sys

import mlx.core as mx
from mlx_lm import load, stream_generate


def answer(model, tokenizer, prompt: str, max_tokens: int, raw: bool, top) -> dict:
    if not raw:
        messages = [{"role": "user", "content": prompt}]
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    bos = tokenizer.bos_token
    add_special = not (bos and prompt.startswith(bos))
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=add_special)
    tokens, logprobs = [], []
    text = ""
    for response in stream_generate(model, tokenizer, prompt_ids, max_tokens=max_tokens):
        tokens.append(int(response.token))
        text += response.text
        if top is not None:
            row = response.logprobs.astype(mx.float32)
            order = mx.argsort(-row)[:top].tolist()
            logprobs.append({
                "logprob": row[response.token].item(),
                "top": [[i, row[i].item()] for i in order],
            })
    result = {"prompt": prompt, "prompt_ids": prompt_ids, "tokens": tokens, "text": text}
    if top is not None:
        result["logprobs"] = logprobs
    return result


def main() -> None:
    model_dir, prompt, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model, tokenizer = load(model_dir)
    raw = "--raw" in sys.argv
    top = int(sys.argv[sys.argv.index("--logprobs") + 1]) if "--logprobs" in sys.argv else None
    if "--many" in sys.argv:
        results = [answer(model, tokenizer, p, max_tokens, raw, top) for p in json.loads(prompt)]
        print(json.dumps(results))
    else:
        print(json.dumps(answer(model, tokenizer, prompt, max_tokens, raw, top)))


if __name__ == "__main__":
    main()
