r"""The package's modules import one another without cycles, and the layers
point one way: ``data -> nn -> train -> cli`` (``nn`` never imports the
trainer, the CLI or the distributed layer)."""
import ast
from pathlib import Path
from typing import Dict, List, Set

import pyg_mmssl

ROOT = Path(pyg_mmssl.__file__).parent
PACKAGE = 'pyg_mmssl'


def module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def is_module(name: str) -> bool:
    rel = Path(*name.split('.')[1:]) if '.' in name else Path()
    return ((ROOT / rel).with_suffix('.py').is_file()
            or (ROOT / rel / '__init__.py').is_file())


def imports(path: Path) -> Set[str]:
    r"""The package modules ``path`` imports, at any depth of its code (an
    import inside a function counts: it runs)."""
    name = module_of(path)
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')
                anchor = anchor[:len(anchor) - node.level + 1]
                base = '.'.join(anchor + ([base] if base else []))
            targets = [f'{base}.{a.name}' if is_module(f'{base}.{a.name}')
                       else base for a in node.names]
        else:
            continue
        out |= {t for t in targets
                if t.split('.')[0] == PACKAGE and is_module(t) and t != name}
    return out


def graph() -> Dict[str, Set[str]]:
    return {module_of(p): imports(p) for p in ROOT.rglob('*.py')}


def find_cycle(edges: Dict[str, Set[str]]) -> List[str]:
    state: Dict[str, int] = {}  # 1: on the stack, 2: done
    stack: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = 2
        stack.pop()
        return []

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_the_walker_sees_imports_and_cycles():
    edges = graph()
    assert 'pyg_mmssl.nn.models.base' in edges['pyg_mmssl.nn.models.mmssl']
    assert 'pyg_mmssl.train' in edges['pyg_mmssl.cli']  # inside functions too
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == \
        ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b'}, 'b': set()}) == []


def test_no_import_cycle():
    assert find_cycle(graph()) == []


def test_nn_does_not_import_the_layers_above():
    above = ('pyg_mmssl.train', 'pyg_mmssl.cli', 'pyg_mmssl.distributed',
             'pyg_mmssl.presets')
    for module, targets in graph().items():
        if module.startswith('pyg_mmssl.nn'):
            wrong = [t for t in targets if t.startswith(above)]
            assert not wrong, (module, wrong)
