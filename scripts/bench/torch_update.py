# PyTorch CPU eager anchor for `npm run bench:update`: a full fine-tuning update of a Hugging Face model
# directory (e.g. SmolLM2-135M-Instruct written by `dro model import --gguf`) on BATCH random sequences of
# LENGTH tokens, the token-mean next-token loss over every predicted token, gradients accumulated over
# micro-batches of MICRO tokens (sequences x length), one clipped AdamW step. Prints tokens/s, seconds per
# update (median after WARMUP untimed updates) and the process's peak RSS.
# usage: python torch_update.py MODEL_DIR BATCH [STEPS=2] [--warmup 2] [--micro 2048] [--length 512] [--checkpointing] [--json]
import argparse, json, resource, statistics, time
import torch
from transformers import AutoModelForCausalLM

p = argparse.ArgumentParser()
p.add_argument('model_dir'); p.add_argument('batch', type=int); p.add_argument('steps', type=int, nargs='?', default=2)
p.add_argument('--warmup', type=int, default=2); p.add_argument('--micro', type=int, default=2048); p.add_argument('--length', type=int, default=512)
p.add_argument('--checkpointing', action='store_true'); p.add_argument('--json', action='store_true')
a = p.parse_args()
torch.set_num_threads(2); torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(a.model_dir, torch_dtype=torch.float32, attn_implementation='sdpa')
model.train()
if a.checkpointing: model.gradient_checkpointing_enable()
opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0)
vocab = model.config.vocab_size
rows = max(1, a.micro // a.length)
predicted = a.batch * (a.length - 1)

def update(s):
    g = torch.Generator().manual_seed(s)
    ids = torch.randint(0, vocab, (a.batch, a.length), generator=g)
    opt.zero_grad(set_to_none=True)
    for start in range(0, a.batch, rows):
        chunk = ids[start:start + rows]
        logits = model(chunk).logits[:, :-1]
        # Summed over the micro-batch, divided by the whole batch's token count: the micro-batches add up to the batch's mean.
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), chunk[:, 1:].reshape(-1), reduction='sum') / predicted
        loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()

for s in range(a.warmup):
    update(s)
times = []
for s in range(a.warmup, a.warmup + a.steps):
    t0 = time.perf_counter(); update(s); times.append(time.perf_counter() - t0)
dt = statistics.median(times)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out = {'tokensPerSecond': predicted / dt, 'secondsPerStep': dt, 'peakRssMiB': peak, 'stepSeconds': times, 'torch': torch.__version__}
print(json.dumps(out) if a.json else f"torch {torch.__version__}: batch {a.batch} x {a.length} in micro-batches of {rows}: {out['tokensPerSecond']:.1f} tokens/s, {dt:.1f} s/update, peak RSS {peak:.0f} MiB")
