#!/usr/bin/env python3
"""The top-level module graph of a crate (from `crate::x` paths) and its import cycles.

Exits 1 and prints each cycle (a strongly connected component of more than one module)
if there is one. CI runs it on fluvius-core: leaf types live in leaf modules. Rough by
design: it reads text, skips comments and `#[cfg(test)] mod tests`, and counts any
`crate::name` path as an edge.
"""
import os, re, sys
root = sys.argv[1]
mods = {}
for dirpath, _, files in os.walk(root):
    for f in files:
        if not f.endswith('.rs'): continue
        path = os.path.join(dirpath, f)
        rel = os.path.relpath(path, root)
        top = rel.split(os.sep)[0].removesuffix('.rs')
        if top in ('lib', 'main'): continue
        text = open(path).read()
        # drop #[cfg(test)] mod tests {...} roughly: cut at '#[cfg(test)]\nmod tests'
        i = text.find('#[cfg(test)]\nmod tests')
        if i >= 0: text = text[:i]
        text = re.sub(r'//[^\n]*', '', text)
        deps = set(re.findall(r'\bcrate::([a-z_][a-z0-9_]*)', text))
        # grouped imports: use crate::{a, b::c}
        for grp in re.findall(r'use crate::\{([^}]*)\}', text, re.S):
            deps |= set(re.findall(r'(?:^|[,{\s])([a-z_][a-z0-9_]*)(?=::|\s*[,}]|\s*$)', grp))
        # super:: from a submodule refers to its own top module
        mods.setdefault(top, set()).update(d for d in deps if d != top)
known = set(mods)
graph = {m: sorted(d for d in ds if d in known) for m, ds in mods.items()}
# Tarjan SCC
index, low, stack, on, sccs, n = {}, {}, [], set(), [], [0]
def strong(v):
    index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
    for w in graph[v]:
        if w not in index: strong(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(sorted(comp))
sys.setrecursionlimit(10000)
for v in sorted(graph):
    if v not in index: strong(v)
for c in sccs:
    print('cycle:', ' '.join(c))
    for m in c: print('   ', m, '->', [d for d in graph[m] if d in c])
sys.exit(1 if sccs else 0)
