r"""The documentation stays true to the repository: relative links resolve
(anchors included), the README stays short, nothing points outside the
repository, and the README's code uses names, subcommands and make targets
that exist."""
import argparse
import ast
import importlib
import re
import shlex
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / 'README.md'
DOC_FILES = sorted([README, ROOT / 'CONTRIBUTING.md',
                    *(ROOT / 'docs').glob('*.md'),
                    *(ROOT / 'benchmarks').glob('*.md')])
MAX_README_LINES = 200
# Files that users of the repository do not have.
OUTSIDE = ('../shared', 'shared/docs', 'mmssl-method.md')

FENCE = re.compile(r'^(\s*)(```+|~~~+)\s*([\w+-]*)')
LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?'
                  r'(?:\s+"[^"]*")?\s*\)')
REFERENCE = re.compile(r'^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$')
HEADING = re.compile(r'^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$')
HTML_ANCHOR = re.compile(r'<a\s+(?:name|id)="([^"]+)"', re.IGNORECASE)
EXTERNAL = re.compile(r'^(?:[a-z][a-z0-9+.-]*:|//)', re.IGNORECASE)


# Markdown ###################################################################

def split_blocks(text: str) -> Tuple[str, List[Tuple[str, str]]]:
    r"""The text outside fenced code blocks (blocks blanked, line numbers
    kept) and the ``(language, code)`` of every fenced block."""
    prose, blocks = [], []
    fence, lang, code = None, '', []
    for line in text.splitlines():
        m = FENCE.match(line)
        if fence is None:
            if m:
                fence, lang, code = m.group(2)[0] * 3, m.group(3).lower(), []
                prose.append('')
            else:
                prose.append(line)
        elif line.strip().startswith(fence):
            blocks.append((lang, '\n'.join(code)))
            fence = None
            prose.append('')
        else:
            code.append(line)
            prose.append('')
    return '\n'.join(prose), blocks


def _dedent(code: str) -> str:
    lines = [ln for ln in code.splitlines() if ln.strip()]
    width = min((len(ln) - len(ln.lstrip()) for ln in lines), default=0)
    return '\n'.join(ln[width:] for ln in code.splitlines())


def code_blocks(text: str, *langs: str) -> List[str]:
    return [_dedent(code) for lang, code in split_blocks(text)[1]
            if lang in langs]


def link_targets(text: str) -> List[str]:
    r"""Targets of inline links, images and link references, outside code
    (fenced blocks and inline code spans)."""
    prose = re.sub(r'`[^`\n]*`', '', split_blocks(text)[0])
    targets = [m.group(1) for m in LINK.finditer(prose)]
    targets += [m.group(1) for line in prose.splitlines()
                for m in [REFERENCE.match(line)] if m]
    return targets


def slug(heading: str) -> str:
    r"""GitHub's anchor for a heading: markup dropped, lower case,
    punctuation other than ``-`` and ``_`` removed, spaces to hyphens."""
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)
    text = re.sub(r'<[^>]+>', '', text).strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def anchors(path: Path) -> Set[str]:
    prose = split_blocks(path.read_text(encoding='utf-8'))[0]
    seen: Dict[str, int] = {}
    out = set(HTML_ANCHOR.findall(prose))
    for line in prose.splitlines():
        m = HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f'{base}-{n}')
    return out


def broken_links(path: Path, root: Path = ROOT) -> List[str]:
    r"""One message per relative link of ``path`` that does not resolve to a
    file (or folder) inside ``root``, or whose ``#anchor`` is not a heading
    of the target Markdown file."""
    problems = []
    for target in link_targets(path.read_text(encoding='utf-8')):
        if not target or EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition('#')
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(root)}: link '{target}'"
        try:
            dest.relative_to(root.resolve())
        except ValueError:
            problems.append(f"{where} points outside the repository")
            continue
        if not dest.exists():
            problems.append(f"{where}: no such file")
        elif anchor and dest.suffix == '.md' and anchor not in anchors(dest):
            problems.append(f"{where}: no heading with anchor '#{anchor}' in "
                            f"{dest.relative_to(root.resolve())}")
    return problems


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


# Links, length, nothing outside ##############################################

def test_doc_files_exist():
    for name in ('README.md', 'CONTRIBUTING.md', 'LICENSE', 'CITATION.cff',
                 'docs/method.md', 'docs/distributed.md', 'docs/gpu.md',
                 'docs/formats.md', 'docs/safety.md', 'benchmarks/RESULTS.md',
                 'benchmarks/HISTORY.md'):
        assert (ROOT / name).is_file(), name


@pytest.mark.parametrize('path', DOC_FILES, ids=_name)
def test_relative_links_resolve(path):
    assert broken_links(path) == []


def test_link_checker_reports_broken_links(tmp_path):
    (tmp_path / 'docs').mkdir()
    (tmp_path / 'docs' / 'a.md').write_text('# Title here\n\n## Second, part\n')
    page = tmp_path / 'README.md'
    page.write_text(
        '[ok](docs/a.md) [ok](docs/a.md#second-part) [ok](#top-heading)\n'
        '[web](https://pyg.org) [mail](mailto:x@y.z) `[code](nowhere.md)`\n'
        '# Top heading\n'
        '[gone](docs/missing.md) [bad anchor](docs/a.md#nothing)\n'
        '[out](../outside.md)\n'
        '```bash\n[in code](ignored.md)\n```\n')
    problems = broken_links(page, tmp_path)
    assert len(problems) == 3, problems
    assert 'docs/missing.md' in problems[0] and 'no such file' in problems[0]
    assert '#nothing' in problems[1]
    assert 'outside the repository' in problems[2]


def test_slug_matches_github():
    assert slug('GPU (H200)') == 'gpu-h200'
    assert slug('`lowrank` against `exact`, three seeds') == \
        'lowrank-against-exact-three-seeds'
    assert slug("The released code's defects, and what pyg_mmssl does "
                "instead") == \
        'the-released-codes-defects-and-what-pyg_mmssl-does-instead'


def test_readme_is_short():
    lines = README.read_text(encoding='utf-8').splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines; keep it to {MAX_README_LINES} and "
        f"move detail into docs/ or benchmarks/RESULTS.md")


@pytest.mark.parametrize('path', DOC_FILES, ids=_name)
def test_nothing_outside_the_repository(path):
    text = path.read_text(encoding='utf-8')
    found = [s for s in OUTSIDE if s in text]
    assert not found, f"{_name(path)} refers to {found}, which users do not have"


# The README's code ###########################################################

def _attribute_checks(tree: ast.AST) -> Iterator[Tuple[object, str, str]]:
    r"""``(owner, attribute, where)`` for every attribute the code reads from
    a ``pyg_mmssl`` module or class: imported names, ``Class.attr``,
    ``Class(...).attr`` and ``var.attr`` where ``var = Class(...)`` or
    ``var = Class.from_*(...)``."""
    known: Dict[str, object] = {}      # imported name -> module or object
    instances: Dict[str, type] = {}    # variable -> class it holds
    nodes = sorted(ast.walk(tree), key=lambda n: (getattr(n, 'lineno', 0),
                                                  getattr(n, 'col_offset', 0)))
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and \
                node.module.split('.')[0] == 'pyg_mmssl':
            module = importlib.import_module(node.module)
            for alias in node.names:
                yield module, alias.name, f"from {node.module} import "
                if hasattr(module, alias.name):
                    known[alias.asname or alias.name] = getattr(module,
                                                                alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split('.')[0] == 'pyg_mmssl':
                    module = importlib.import_module(alias.name)
                    known[alias.asname or alias.name.split('.')[0]] = \
                        module if alias.asname else \
                        importlib.import_module('pyg_mmssl')
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name) and \
                isinstance(node.value, ast.Call):
            cls = _constructed_class(node.value.func, known)
            if cls is not None:
                instances[node.targets[0].id] = cls
        elif isinstance(node, ast.Attribute):
            value = node.value
            if isinstance(value, ast.Name) and value.id in instances:
                yield instances[value.id], node.attr, f"{value.id}."
            elif isinstance(value, ast.Name) and value.id in known:
                yield known[value.id], node.attr, f"{value.id}."
            elif isinstance(value, ast.Call):
                cls = _constructed_class(value.func, known)
                if cls is not None:
                    yield cls, node.attr, f"{cls.__name__}(...)."


def _constructed_class(func: ast.AST, known: Dict[str, object]):
    r"""The class an expression ``func(...)`` makes an instance of, when that
    is plain: ``Class(...)`` or ``Class.from_*(...)``."""
    if isinstance(func, ast.Name) and isinstance(known.get(func.id), type):
        return known[func.id]
    if isinstance(func, ast.Attribute) and func.attr.startswith('from_') and \
            isinstance(func.value, ast.Name) and \
            isinstance(known.get(func.value.id), type):
        return known[func.value.id]
    return None


def _has(owner: object, name: str) -> bool:
    if hasattr(owner, name):
        return True
    if isinstance(owner, type(importlib)):  # a submodule not yet imported
        try:
            importlib.import_module(f'{owner.__name__}.{name}')
            return True
        except ImportError:
            return False
    return False


def _python_problems(path: Path) -> Tuple[int, List[str]]:
    r"""How many ``pyg_mmssl`` names the Python blocks of ``path`` use, and
    those that do not exist."""
    checked, missing = 0, []
    for code in code_blocks(path.read_text(encoding='utf-8'), 'python', 'py'):
        for owner, name, where in _attribute_checks(ast.parse(code)):
            checked += 1
            if not _has(owner, name):
                label = getattr(owner, '__name__', repr(owner))
                missing.append(f"{where}{name} ({label} has no '{name}')")
    return checked, missing


def test_readme_python_uses_existing_names():
    checked, missing = _python_problems(README)
    assert checked >= 5, "expected the README's snippets to use pyg_mmssl"
    assert missing == [], missing


@pytest.mark.parametrize('path', [ROOT / 'CONTRIBUTING.md',
                                  *sorted((ROOT / 'docs').glob('*.md'))],
                         ids=_name)
def test_docs_python_uses_existing_names(path):
    assert _python_problems(path)[1] == []


def test_readme_api_table_names_exist():
    rows = [line for line in README.read_text(encoding='utf-8').splitlines()
            if re.match(r'^\|\s*`pyg_mmssl[\w.]*`\s*\|', line)]
    assert len(rows) >= 10, "README.md should have the public API table"
    missing = []
    for row in rows:
        cells = [c.strip() for c in row.strip('|').split('|')]
        module = importlib.import_module(cells[0].strip('`'))
        for name in re.findall(r'`([A-Za-z_]\w*)`', cells[1]):
            if not _has(module, name):
                missing.append(f"{module.__name__}.{name}")
    assert missing == [], f"API table names that do not exist: {missing}"


def _subcommands() -> Set[str]:
    cli = importlib.import_module('pyg_mmssl.cli')
    names = set(getattr(cli, 'COMMANDS', {}))
    for action in cli.build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            names |= set(action.choices)
    return names


def _make_targets() -> Set[str]:
    text = (ROOT / 'Makefile').read_text(encoding='utf-8')
    targets = set(re.findall(r'^([A-Za-z0-9_][\w.-]*)\s*:(?!=)', text, re.M))
    for line in re.findall(r'^\.PHONY\s*:(.*)$', text, re.M):
        targets |= set(line.split())
    return targets


def _commands(code: str) -> Iterator[List[str]]:
    r"""The words of every command of a shell block (continuation lines
    joined, comments dropped, ``&&`` / ``;`` / ``|`` split)."""
    for line in code.replace('\\\n', ' ').splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            words = line.split('#')[0].split()
        command: List[str] = []
        for word in words + [';']:
            if word in ('&&', '||', ';', '|'):
                if command:
                    yield command
                command = []
            else:
                command.append(word)


def _shell_problems(code: str, commands: Set[str], targets: Set[str]
                    ) -> List[str]:
    problems = []
    for words in _commands(code):
        for i, word in enumerate(words):
            rest = words[i + 1:]
            name = Path(word).name
            if name == 'pyg-mmssl' or (word == '-m' and rest[:1] ==
                                       ['pyg_mmssl.cli']):
                args = rest[1:] if word == '-m' else rest
                sub = next((a for a in args if not a.startswith('-')), None)
                if sub not in commands:
                    problems.append(f"'{' '.join(words)}': no subcommand "
                                    f"'{sub}' in pyg-mmssl")
            elif name == 'make' and i == next(
                    j for j, w in enumerate(words) if '=' not in w):
                for arg in rest:
                    if not arg.startswith('-') and '=' not in arg and \
                            arg not in targets:
                        problems.append(f"'{' '.join(words)}': no make target "
                                        f"'{arg}'")
            elif word.endswith('.py') and '/' in word and \
                    not word.startswith(('/', '<')) and \
                    not (ROOT / word).exists():
                problems.append(f"'{' '.join(words)}': no file '{word}'")
    return problems


@pytest.mark.parametrize('path', [README, ROOT / 'CONTRIBUTING.md',
                                  *sorted((ROOT / 'docs').glob('*.md'))],
                         ids=_name)
def test_shell_blocks_use_existing_commands(path):
    commands, targets = _subcommands(), _make_targets()
    assert {'train', 'evaluate', 'recommend', 'compare', 'info'} <= commands
    assert {'demo', 'test'} <= targets
    problems = []
    for code in code_blocks(path.read_text(encoding='utf-8'), 'bash', 'sh',
                            'shell', 'console'):
        problems += _shell_problems(code, commands, targets)
    assert problems == []


def test_shell_checker_reports_unknown_commands():
    code = ('pyg-mmssl trian --model x   # typo\n'
            'make tset\n'
            'PYG_MMSSL_TIKTOK=/data make test\n'
            'python benchmarks/nothing_here.py\n'
            'torchrun --nnodes 2 \\\n    -m pyg_mmssl.cli train --out x\n')
    problems = _shell_problems(code, {'train'}, {'test'})
    assert len(problems) == 3, problems
    assert "'trian'" in problems[0] and "'tset'" in problems[1]
    assert 'nothing_here.py' in problems[2]
