"""How each queue system's submit command reads the directive lines of a job script, in Python.

Line-by-line ports of the queues' own C code, so that unit tests can check our quoting against
the real rules (the integration tests then submit to the real SLURM and Grid Engine). Each
function takes the text of one directive line after its prefix and returns the words the
queue reads, or raises ``MisreadError`` where the queue would refuse the script.

- SLURM 22.05 ``sbatch``: ``get_argument`` and ``_opt_batch_script`` in ``src/sbatch/opt.c``;
  filename patterns: ``remove_path_slashes`` (``src/common/read_config.c``) and
  ``_create_batch_fname`` (``src/slurmd/common/fname.c``).
- Grid Engine ``qsub``: ``parse_script_file`` (``source/common/parse_job_cull.c``),
  ``string_list`` and ``sge_strip_quotes`` (``source/libs/uti/sge_string.c``),
  ``cull_parse_path_list`` (``source/libs/sgeobj/cull_parse_util.c``) and ``expand_path``
  (``source/daemons/execd/get_path.c``).
- PBS Professional / OpenPBS ``qsub``: ``make_argv`` (``src/cmds/qsub.c``).
"""

from __future__ import annotations

C_SPACE = " \t\n\v\f\r"  # C's isspace() in the C locale


class MisreadError(Exception):
    """The queue's submit command would refuse this line."""


def sbatch_words(line: str) -> list[str]:
    """The arguments sbatch 22.05 reads from ``#SBATCH<line>``."""
    words: list[str] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in C_SPACE:
            i += 1
        if i < n and line[i] == ":":
            raise MisreadError(f"Unexpected `:` in [{line}]")
        if i >= n:
            return words
        argument: list[str] | None = None
        quoted, quote, escape = False, "", False
        while i < n and (quoted or line[i] not in C_SPACE) and line[i] != "\n":
            char = line[i]
            if escape:
                escape = False
            elif char == "\\":
                escape = True
                i += 1
                continue
            elif quoted:
                if char == quote:
                    quoted = False
                    i += 1
                    continue
            elif char in "\"'":
                quoted, quote = True, char
                i += 1
                continue
            elif char == "#":
                break  # an unescaped, unquoted # starts a comment
            argument = (argument or []) + [char]
            i += 1
        if quoted:
            raise MisreadError(f"Unmatched `{quote}` in [{line}]")
        if argument is None:  # get_argument returned NULL: the rest of the line is ignored
            return words
        words.append("".join(argument))


def slurm_output_file(pattern: str, job_id: int = 42) -> str:
    """The file an sbatch ``--output`` pattern names (only ``%%`` and ``%j`` are expanded here;
    any other replacement symbol is an error, since we never mean one)."""
    if "\\" in pattern:  # remove_path_slashes: no replacement at all, "\\" is one backslash
        out, i = [], 0
        while i < len(pattern):
            if pattern[i] == "\\" and i + 1 < len(pattern) and pattern[i + 1] == "\\":
                out.append("\\")
                i += 2
            elif pattern[i] == "\\":
                i += 1
            else:
                out.append(pattern[i])
                i += 1
        return "".join(out)
    out, i = [], 0
    while i < len(pattern):
        if pattern[i] == "%":
            following = pattern[i + 1:i + 2]
            if following == "%":
                out.append("%")
            elif following == "j":
                out.append(str(job_id))
            else:
                raise MisreadError(f"replacement symbol %{following} in {pattern!r}")
            i += 2
        else:
            out.append(pattern[i])
            i += 1
    return "".join(out)


def _sge_string_list(text: str, delimiters: str = " \t\n") -> list[str]:
    """``string_list``, quirks included: a quote's closing character opens it again, so a
    word that starts a quote runs to the end of the line."""
    words: list[str] = []
    i, n = 0, len(text)
    quote = 0
    while True:
        while i < n and text[i] in delimiters:
            i += 1
        if i >= n:
            return words
        start = i
        is_space = False
        while i < n and not is_space:
            if quote == 0 and text[i] == '"':
                quote = 2
            elif quote == 0 and text[i] == "'":
                quote = 1
            i += 1
            if quote == 0:
                is_space = i >= n or text[i] in delimiters
            if i < n and ((quote == 2 and text[i] == '"') or (quote == 1 and text[i] == "'")):
                quote = 0
        words.append(text[start:i])
        if i >= n:
            return words
        i += 1


def sge_words(line: str) -> list[str]:
    """The words Grid Engine's qsub reads from ``#$<line>``."""
    text = line.lstrip(C_SPACE).split("#", 1)[0].rstrip(C_SPACE)
    if not text:
        return []
    return [word.replace('"', "").replace("'", "") for word in _sge_string_list(text)]


_SGE_PSEUDO = ("$HOME", "$USER", "$JOB_ID", "$JOB_NAME", "$HOSTNAME", "$TASK_ID")


def sge_output_file(value: str) -> str:
    """The one file a ``-o`` value names on the execution host (``[[host]:]path``, one entry)."""
    entries = value.split(",")
    if len(entries) != 1:
        raise MisreadError(f"{value!r} is a list of {len(entries)} paths")
    entry = entries[0]
    if entry.startswith(":"):
        path = entry[1:]
    elif ":" in entry:
        raise MisreadError(f"{value!r} names host {entry.split(':', 1)[0]!r}")
    else:
        path = entry
    if path.startswith("~") or any(p in path for p in _SGE_PSEUDO):
        raise MisreadError(f"{path!r} would be expanded on the execution host")
    return path


def pbs_words(line: str) -> list[str]:
    """The arguments PBS Pro's qsub reads from ``#PBS<line>`` (``make_argv``)."""
    words: list[str] = []
    buffer: list[str] = []
    text = line.lstrip(C_SPACE)
    i, n = 0, len(text)
    start = 0
    while i < n:
        char = text[i]
        if char in "\"'":
            i += 1
            while i < n and text[i] != char:
                buffer.append(text[i])
                i += 1
            if i >= n:
                raise MisreadError(f"qsub: unmatched {char}")
            i += 1
        elif char == "\\":
            i += 1
            if i < n:
                buffer.append(text[i])
            i += 1
        elif char in C_SPACE:
            words.append("".join(buffer))
            buffer = []
            while i < n and text[i] in C_SPACE:
                i += 1
            start = i
        else:
            buffer.append(char)
            i += 1
    if i != start:
        words.append("".join(buffer))
    return words


#: the parser of each queue system, by its kind
DIRECTIVE_READERS = {"slurm": sbatch_words, "sge": sge_words, "pbs": pbs_words}
