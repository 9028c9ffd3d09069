# A forkpool exec worker in Python: three tasks, standard library only.
# Run it (from the source tree; see the README, "Python"):
#   PYTHONPATH=python build/server/forkpoold --listen 127.0.0.1:8081 \
#       --exec py="python3 examples/python/worker.py"
# and call its tasks as py.resize, py.split and py.tally.
from forkpool_worker import serve

def resize(args):
    return {"w": args["w"] // 2, "h": args["h"] // 2}

def split(line):
    """Split a line into words."""
    yield from line.split()        # a generator: one output per word

def tally(values):                 # a reduce: words and {word: n} -> {word: n}
    counts = {}
    for v in values:
        for word, n in (v.items() if isinstance(v, dict) else [(v, 1)]):
            counts[word] = counts.get(word, 0) + n
    return counts

serve({"resize": resize, "split": split, "tally": tally})   # or @task and serve()
