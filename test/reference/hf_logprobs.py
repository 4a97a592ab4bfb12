# Teacher-forced log-probabilities of token ids under a model directory loaded by Hugging Face transformers
# (optionally with a PEFT adapter on top), and the ids its tokenizer gives a text: the other side of the
# round trip in test/transformers.test.ts. Reads one JSON request on stdin, writes one JSON answer.
import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

request = json.load(sys.stdin)
torch.set_num_threads(2)
model = AutoModelForCausalLM.from_pretrained(request["model"], dtype=torch.float32)
if request.get("adapter"):
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, request["adapter"])
model.eval()
ids = torch.tensor([request["ids"]])
with torch.no_grad():
    logits = model(ids).logits[0].double()
logprobs = torch.log_softmax(logits, dim=-1)
targets = request["ids"][1:]
answer = {
    "logprobs": [logprobs[t, targets[t]].item() for t in range(len(targets))],
    "architecture": type(model).__name__,
    "dtype": str(next(model.parameters()).dtype),
}
if request.get("text") is not None:
    tokenizer = AutoTokenizer.from_pretrained(request["model"])
    answer["textIds"] = tokenizer(request["text"], add_special_tokens=False)["input_ids"]
    if tokenizer.chat_template:
        answer["chat"] = tokenizer.apply_chat_template([{"role": "user", "content": request["text"]}], tokenize=False, add_generation_prompt=True)
json.dump(answer, sys.stdout)
