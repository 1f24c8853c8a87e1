"""Generate Python-API (direct/delayed) test vectors from UPSTREAM seamless-transformer.

Run this with the upstream virtualenv's python (seamless-transformer 0.6.1,
seamless-core 0.1.4), from the repository root:

    /tmp/seamless-upstream/bin/python tests/compat/make_python_vectors.py \
        > tests/data/python-vectors.jsonl

or, equivalently, with an explicit output path:

    /tmp/seamless-upstream/bin/python tests/compat/make_python_vectors.py \
        -o tests/data/python-vectors.jsonl

Optional: `-k SUBSTRING` only generates the cases whose name contains SUBSTRING
(useful while debugging; the committed file must contain all cases).

Environment: SEAMLESS_CACHE is removed from the environment before seamless is
imported, the working directory is changed to a scratch directory without a
seamless.yaml, and seamless.config.init() is never called.  Everything therefore
runs in-process with only the in-memory buffer/transformation caches.  Anything
that upstream prints while running (transformer prints, bash output, atexit
noise) is sent to stderr: file descriptor 1 is redirected to stderr for the whole
run, and the JSONL goes to the saved original stdout (or to the -o file).

Every case is a self-contained piece of Python source.  It is written to
<tmp>/seamless-python-vectors/<case>/pyvec_<case>.py (so that inspect.getsource
works), together with any helper files of the case, then imported; then the
expression `expr` (normally "make()") is evaluated in the module namespace.

One JSON object per line, keys (absent when not applicable):

  name              case name
  description       what the case exercises
  source            the case source, exactly as written to the module file
  files             {relative path: text} helper files written next to it
  module            the module name the source was imported as
  expr              the expression evaluated in the module namespace
  kind              "delayed" (expr gives a Transformation) or "direct"
                    (expr gives the value; the tf checksum is taken from the first
                    identity buffer that upstream built during the call)
  make_error        "ExcType: message" if evaluating expr raised
  construct_error   Transformation.exception after a failed construct()
  tf_checksum       hex of the transformation checksum
  identity          the identity dict (JSON object whose sha256 is tf_checksum),
                    recovered from upstream's buffer cache by the tf checksum
  identity_buffer   the exact identity buffer as text (UTF-8)
  full_dict         the transformation dict *before* identity filtering
                    (Transformation._definition_payload_template: includes
                    __meta__, __env__, __code_checksum__, __code_text__ when
                    present; dependency pins have checksum null here)
  meta              Transformation.meta
  scratch           Transformation.scratch
  buffers           {checksum: base64 bytes} for every checksum referenced by a
                    pin of the identity dict (and of other_identities)
  constructed       all tf checksums whose identity buffer upstream built while
                    the case ran, in order (dependencies, nested calls, ...)
  other_identities  {tf checksum: identity dict} for those other than tf_checksum
  result_checksum   hex of the result checksum (when the run succeeded)
  result_buffer     base64 of the result buffer (when resolvable)
  result_value      the result value, JSON-encoded via `jsonable` (bytes become
                    {"__bytes_b64__": ...}, tuples become lists, other
                    non-JSON values {"__repr__": ...})
  run_error         error text if running failed (memory addresses are
                    replaced by 0xADDR, the scratch dir by <TMP>)
  run               false if the case is deliberately not run
  expect_same_tf_as name of an earlier case that must have the same tf checksum
  same_tf_as_ok     the outcome of that comparison
  extra             JSON-able value returned by the case's optional info()
  note              remarks (e.g. why a case is expected to fail)
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import os
import re
import shutil
import sys
import tempfile
import textwrap

os.environ.pop("SEAMLESS_CACHE", None)


def src(text: str) -> str:
    """Dedent a triple-quoted case source and drop the leading newline."""
    return textwrap.dedent(text).lstrip("\n")


ADD = src(
    """
    from seamless.transformer import delayed


    @delayed
    def add(a, b):
        return a + b
    """
)


def case(**fields):
    """One test case: name, description, source, and optional keys (see main)."""
    return fields


def echo_case(name, literal, description, **kw):
    """A case that passes one literal value through an identity transformer."""
    return case(
        name=name,
        description=description,
        source=src(
            """
            from seamless.transformer import delayed


            @delayed
            def echo(x):
                return x


            def make():
                return echo(%s)
            """
        )
        % literal,
        **kw,
    )


def celltype_case(name, setup, call, description, header=ADD, **kw):
    return case(
        name=name,
        description=description,
        source=header
        + "\n"
        + src(setup)
        + "\n\ndef make():\n    return "
        + call
        + "\n",
        **kw,
    )


CASES = []

# ---------------------------------------------------------------- basics / binding
CASES += [
    case(
        name="add_worked",
        description="worked example: @delayed add(19, 23)",
        source=ADD + "\n\ndef make():\n    return add(19, 23)\n",
    ),
    case(
        name="add_kwargs",
        description="keyword arguments",
        source=ADD + "\n\ndef make():\n    return add(a=19, b=23)\n",
        expect_same_tf_as="add_worked",
    ),
    case(
        name="add_kwargs_reversed",
        description="keyword arguments in reverse order",
        source=ADD + "\n\ndef make():\n    return add(b=23, a=19)\n",
        expect_same_tf_as="add_worked",
    ),
    case(
        name="default_not_given",
        description="parameter with a default that is not passed: no pin",
        source=src(
            """
            from seamless.transformer import delayed


            @delayed
            def scale(x, factor=2):
                return x * factor


            def make():
                return scale(21)
            """
        ),
    ),
    case(
        name="default_given_positional",
        description="parameter with a default, passed explicitly (same value)",
        source=src(
            """
            from seamless.transformer import delayed


            @delayed
            def scale(x, factor=2):
                return x * factor


            def make():
                return scale(21, 2)
            """
        ),
    ),
    case(
        name="default_given_keyword",
        description="parameter with a default, passed by keyword",
        source=src(
            """
            from seamless.transformer import delayed


            @delayed
            def scale(x, factor=2):
                return x * factor


            def make():
                return scale(21, factor=3)
            """
        ),
    ),
    case(
        name="varargs",
        description="*args parameter",
        source=src(
            """
            from seamless.transformer import delayed


            @delayed
            def total(*nums):
                return sum(nums)


            def make():
                return total(1, 2, 3)
            """
        ),
    ),
    case(
        name="varkwargs",
        description="**kwargs parameter",
        source=src(
            """
            from seamless.transformer import delayed


            @delayed
            def names(**kw):
                return sorted(kw)


            def make():
                return names(x=1, y=2)
            """
        ),
    ),
    case(
        name="kwonly_and_annotations",
        description="keyword-only parameter and annotations (annotations do not set celltypes)",
        source=src(
            """
            from seamless.transformer import delayed


            @delayed
            def sub(a: int, *, b: int = 0) -> int:
                return a - b


            def make():
                return sub(50, b=8)
            """
        ),
    ),
    case(
        name="unicode_param_name",
        description="non-ASCII parameter names (pin names in the identity buffer)",
        source=src(
            """
            from seamless.transformer import delayed


            @delayed
            def join(é, 中):
                return é + 中


            def make():
                return join("a", "b")
            """
        ),
    ),
]

# ---------------------------------------------------------------- argument values
CASES += [
    echo_case("val_int", "7", "int argument"),
    echo_case("val_negative", "-12", "negative int"),
    echo_case("val_large_int", "2 ** 70", "int larger than 64 bits"),
    echo_case("val_float", "1.5", "float 1.5"),
    echo_case("val_float_1e16", "1e16", "float 1e16 (repr 1e+16)"),
    echo_case("val_float_0_1", "0.1", "float 0.1"),
    echo_case("val_float_integral", "2.0", "float 2.0"),
    echo_case("val_float_small", "1e-7", "float 1e-7 (json writes 1e-07)"),
    echo_case("val_bool", "True", "bool True"),
    echo_case(
        "val_none",
        "None",
        "None argument",
        note="a None value gives a pin with checksum null",
    ),
    echo_case("val_str_unicode", '"é 中文 😀"', "str with non-ASCII characters"),
    echo_case("val_str_empty", '""', "empty str"),
    echo_case(
        "val_str_escapes", r'"tab\tnl\nquote\"back\\slash"', "str needing JSON escapes"
    ),
    echo_case(
        "val_str_64chars",
        '"a" * 64',
        "a 64-character str argument",
        note="a str of length 64 is taken as a checksum hex by upstream",
    ),
    echo_case("val_list", '[1, "two", 3.5, None, True]', "list"),
    echo_case(
        "val_nested_dict_unicode",
        '{"zeta": 1, "clé": {"中文": [1, 2], "emoji😀": None}, "alpha": {"b": 2, "a": 1}}',
        "nested dict with unicode keys",
    ),
    echo_case("val_tuple", "(1, 2, (3, 4))", "nested tuple"),
    echo_case("val_bytes", 'b"\\x00\\x01raw"', "bytes argument (mixed)"),
]

# ---------------------------------------------------------------- argument celltypes
CASES += [
    celltype_case(
        "ct_int",
        'add.celltypes.a = "int"\nadd.celltypes.b = "int"',
        "add(19, 23)",
        "celltype int for both args",
    ),
    celltype_case(
        "ct_int_coerce",
        'add.celltypes.a = "int"\nadd.celltypes.b = "int"',
        'add("19", 23.0)',
        "celltype int given a str and a float value",
    ),
    celltype_case(
        "ct_float",
        'add.celltypes.a = "float"\nadd.celltypes.b = "float"',
        "add(1, 0.1)",
        "celltype float given int 1 and 0.1",
    ),
    celltype_case(
        "ct_str",
        'add.celltypes.a = "str"\nadd.celltypes.b = "str"',
        'add("héllo ", "中文")',
        "celltype str with non-ASCII",
    ),
    celltype_case(
        "ct_float_small",
        'add.celltypes.a = "float"\nadd.celltypes.b = "float"',
        "add(1e-7, 1e16)",
        "celltype float with 1e-7 and 1e16 (orjson float formatting)",
    ),
    celltype_case(
        "ct_plain_small_floats",
        'add.celltypes.a = "plain"\nadd.celltypes.b = "plain"',
        "add([1e-5, 1.25e-6, 1.5e-7], [1e-4, 1e16, 1.5e-300])",
        "plain floats around the orjson exponent thresholds",
    ),
    celltype_case(
        "ct_str_coerce",
        'add.celltypes.a = "str"\nadd.celltypes.b = "str"',
        "add(5, True)",
        "celltype str given an int and a bool",
        header=src(
            """
            from seamless.transformer import delayed


            @delayed
            def add(a, b):
                return [a, b]
            """
        ),
    ),
    celltype_case(
        "ct_plain_large_int",
        'add.celltypes.a = "plain"',
        "add(2 ** 70, 1)",
        "celltype plain with an int beyond 64 bits",
    ),
    celltype_case(
        "ct_text",
        'add.celltypes.a = "text"\nadd.celltypes.b = "text"',
        'add("line1\\n\\n", "é\\n")',
        "celltype text (trailing newlines)",
    ),
    celltype_case(
        "ct_bool",
        'add.celltypes.a = "bool"\nadd.celltypes.b = "bool"',
        "add(1, False)",
        "celltype bool given 1 and False",
    ),
    celltype_case(
        "ct_plain",
        'add.celltypes.a = "plain"\nadd.celltypes.b = "plain"',
        'add({"é": [1, 2.5], "b": None}, {"中": "文"})',
        "celltype plain with unicode (dict | dict)",
        header=src(
            """
            from seamless.transformer import delayed


            @delayed
            def add(a, b):
                return {**a, **b}
            """
        ),
    ),
    celltype_case(
        "ct_bytes",
        'add.celltypes.a = "bytes"\nadd.celltypes.b = "bytes"',
        'add(b"\\x00\\xffraw", b"tail")',
        "celltype bytes",
    ),
    celltype_case(
        "ct_checksum",
        'add.celltypes.a = "checksum"\nadd.celltypes.b = "int"',
        'add("084c799cd551dd1d8d5c5f9a5d593b2e931f5e36122ee5c793c1d08a19839cc0", 0)',
        "celltype checksum (value is sha256 of '42\\n', computed by add_worked)",
        header=src(
            """
            from seamless.transformer import delayed


            @delayed
            def add(a, b):
                return [a, b]
            """
        ),
    ),
    celltype_case(
        "ct_pytype_int_str",
        "add.celltypes.a = int\nadd.celltypes.b = str",
        'add(19, "23")',
        "celltypes given as Python types int and str",
        header=src(
            """
            from seamless.transformer import delayed


            @delayed
            def add(a, b):
                return str(a) + b
            """
        ),
    ),
    celltype_case(
        "ct_pytype_float_bool_bytes",
        "add.celltypes.a = float\nadd.celltypes.b = bool\nadd.celltypes.result = bytes",
        "add(2, 1)",
        "celltypes given as Python types float, bool, bytes (result)",
        header=src(
            """
            from seamless.transformer import delayed


            @delayed
            def add(a, b):
                return str(a + b)
            """
        ),
    ),
    celltype_case(
        "ct_pytype_dict_refused",
        "add.celltypes.a = dict",
        "add(19, 23)",
        "celltype given as Python type dict (not a celltype name)",
    ),
    celltype_case(
        "ct_unknown_refused",
        'add.celltypes.a = "integer"',
        "add(19, 23)",
        "unknown celltype string",
    ),
    celltype_case(
        "ct_unknown_param_refused",
        'add.celltypes.c = "int"',
        "add(19, 23)",
        "celltype for a name that is not a parameter",
    ),
    celltype_case(
        "ct_yaml_refused",
        'add.celltypes.a = "yaml"',
        "add(19, 23)",
        "celltype yaml: accepted by .celltypes, refused when building",
    ),
    celltype_case(
        "ct_module_arg",
        'add.celltypes.a = "module"',
        'add({"code": "X = 40\\n", "language": "python", "type": "interpreted"}, 2)',
        "celltype module for an argument (module definition dict as value)",
        header=src(
            """
            from seamless.transformer import delayed


            @delayed
            def add(a, b):
                return a.X + b
            """
        ),
    ),
]

# ---------------------------------------------------------------- result celltypes
CASES += [
    celltype_case(
        "res_int", 'add.celltypes.result = "int"', "add(19, 23)", "result celltype int"
    ),
    celltype_case(
        "res_float",
        'add.celltypes.result = "float"',
        "add(19, 23)",
        "result celltype float (int result)",
    ),
    celltype_case(
        "res_str",
        'add.celltypes.result = "str"',
        'add("é", "中")',
        "result celltype str",
    ),
    celltype_case(
        "res_text",
        'add.celltypes.result = "text"',
        'add("é\\n", "\\n\\n")',
        "result celltype text",
    ),
    celltype_case(
        "res_bytes",
        'add.celltypes.result = "bytes"',
        'add(b"\\x00", b"\\xff")',
        "result celltype bytes",
    ),
    celltype_case(
        "res_plain",
        'add.celltypes.result = "plain"',
        'add({"é": 1}, {"a": [0.1, 1e16]})',
        "result celltype plain (floats, unicode)",
        header=src(
            """
            from seamless.transformer import delayed


            @delayed
            def add(a, b):
                return {**a, **b}
            """
        ),
    ),
    celltype_case(
        "res_bool", 'add.celltypes.result = "bool"', "add(0, 0)", "result celltype bool"
    ),
    celltype_case(
        "res_deepfolder_refused",
        'add.celltypes.result = "deepfolder"',
        "add(19, 23)",
        "result celltype deepfolder is refused",
    ),
]

# ---------------------------------------------------------------- .args
CASES += [
    celltype_case(
        "args_prebind",
        "add.args.a = 19",
        "add(b=23)",
        ".args pre-binding of a, b given at call",
        expect_same_tf_as="add_worked",
    ),
    celltype_case(
        "args_prebind_overridden",
        "add.args.a = 1",
        "add(19, 23)",
        "a pre-bound argument overridden positionally",
        expect_same_tf_as="add_worked",
    ),
    celltype_case(
        "args_missing",
        "",
        "add(19)",
        "missing argument (no default)",
    ),
]

# ---------------------------------------------------------------- source capture / decorators
CASES += [
    case(
        name="dec_direct",
        kind="direct",
        description="@direct: returns the value; tf checksum from the identity buffer built",
        source=src(
            """
            from seamless.transformer import direct


            @direct
            def add(a, b):
                return a + b


            def make():
                return add(19, 23)
            """
        ),
        expect_same_tf_as="add_worked",
    ),
    case(
        name="dec_call_form",
        description="delayed(func) without decorator syntax",
        source=src(
            """
            from seamless.transformer import delayed


            def add(a, b):
                return a + b


            tf = delayed(add)


            def make():
                return tf(19, 23)
            """
        ),
        expect_same_tf_as="add_worked",
    ),
    case(
        name="dec_stacked",
        description="two stacked decorators (the inner one returns the function unchanged)",
        source=src(
            """
            from seamless.transformer import delayed


            def keep(func):
                return func


            @delayed
            @keep
            def add(a, b):
                return a + b


            def make():
                return add(19, 23)
            """
        ),
        expect_same_tf_as="add_worked",
    ),
    case(
        name="dec_multiline_expression",
        description="decorator expression spanning several lines",
        source=src(
            """
            from seamless.transformer import delayed


            @(
                delayed
            )
            def add(a, b):
                return a + b


            def make():
                return add(19, 23)
            """
        ),
        note="only lines starting with '@' are stripped",
    ),
    case(
        name="dec_with_arguments",
        description="a decorator factory with arguments",
        source=src(
            """
            from seamless.transformer import delayed


            def transformer(language="python"):
                def wrap(func):
                    return delayed(func, language=language)
                return wrap


            @transformer(language="python")
            def add(a, b):
                return a + b


            def make():
                return add(19, 23)
            """
        ),
        expect_same_tf_as="add_worked",
    ),
    case(
        name="dec_comment_between",
        description="a comment line between decorator and def",
        source=src(
            """
            from seamless.transformer import delayed


            # comment above the decorator
            @delayed
            # comment between decorator and def
            def add(a, b):
                return a + b


            def make():
                return add(19, 23)
            """
        ),
    ),
    case(
        name="src_docstring_comments_blank",
        description="docstring, comments, blank lines inside the body, trailing comment",
        source=src(
            '''
            from seamless.transformer import delayed


            @delayed
            def add(a, b):  # trailing comment on def line
                """Add two things.

                Second docstring line.
                """
                # a comment

                c = a + b


                return c
                # comment after the last statement

            # comment at module level after the function


            def make():
                return add(19, 23)
            '''
        ),
    ),
    case(
        name="src_whitespace_lines",
        description="whitespace-only line and trailing whitespace inside the body",
        source=(
            "from seamless.transformer import delayed\n"
            "\n"
            "\n"
            "@delayed\n"
            "def add(a, b):\n"
            "    c = a + b   \n"
            "        \n"
            "    return c\n"
            "\n"
            "\n"
            "def make():\n"
            "    return add(19, 23)\n"
        ),
    ),
    case(
        name="src_tabs",
        description="tab-indented function body",
        source=(
            "from seamless.transformer import delayed\n"
            "\n"
            "\n"
            "@delayed\n"
            "def add(a, b):\n"
            "\tc = a + b\n"
            "\treturn c\n"
            "\n"
            "\n"
            "def make():\n"
            "\treturn add(19, 23)\n"
        ),
    ),
    case(
        name="src_nested_def",
        description="transformer defined inside make() (indented source, dedented)",
        source=src(
            """
            from seamless.transformer import delayed


            def make():
                @delayed
                def add(a, b):
                    # inner comment
                    return a + b

                return add(19, 23)
            """
        ),
        expect_same_tf_as="src_nested_def_flat",
        note="compare with src_nested_def_flat (generated later); see same_tf_as_ok",
    ),
    case(
        name="src_nested_def_flat",
        description="the same function as src_nested_def at module level",
        source=src(
            """
            from seamless.transformer import delayed


            @delayed
            def add(a, b):
                # inner comment
                return a + b


            def make():
                return add(19, 23)
            """
        ),
    ),
    case(
        name="src_nested_two_levels",
        description="transformer defined two function levels deep, with a closure variable",
        source=src(
            """
            from seamless.transformer import delayed


            def outer():
                offset = 1000

                def middle():
                    @delayed
                    def add(a, b):
                        return a + b + offset

                    return add

                return middle()


            def make():
                return outer()(19, 23)
            """
        ),
        note="closure variables are not captured: NameError at run time",
    ),
    case(
        name="src_class_body",
        description="transformer defined in a class body (method-like indentation)",
        source=src(
            """
            from seamless.transformer import delayed


            class Ops:
                @delayed
                def add(a, b):
                    return a + b


            def make():
                return Ops.add(19, 23)
            """
        ),
        expect_same_tf_as="add_worked",
    ),
    case(
        name="src_lambda",
        description="delayed(lambda ...) (lambda source extraction)",
        source=src(
            """
            from seamless.transformer import delayed

            mul = delayed(lambda a, b: a * b)


            def make():
                return mul(6, 7)
            """
        ),
    ),
    case(
        name="src_closure_global_invisible",
        description="a module-level constant used without .globals",
        source=src(
            """
            from seamless.transformer import delayed

            OFFSET = 100


            @delayed
            def add(a, b):
                return a + b + OFFSET


            def make():
                return add(19, 23)
            """
        ),
    ),
    case(
        name="run_raises",
        description="the function raises",
        source=src(
            """
            from seamless.transformer import delayed


            @delayed
            def fail(a):
                raise ValueError("boom " + str(a))


            def make():
                return fail(1)
            """
        ),
    ),
    case(
        name="run_returns_none",
        description="the function returns None",
        source=src(
            """
            from seamless.transformer import delayed


            @delayed
            def nothing(a):
                pass


            def make():
                return nothing(1)
            """
        ),
    ),
]

# ---------------------------------------------------------------- .globals
GLOBALS_HEAD = src(
    """
    from seamless.transformer import delayed


    @delayed
    def calc(a):
        return %s
    """
)

CASES += [
    case(
        name="glob_int",
        description="global int constant",
        source=GLOBALS_HEAD % "a + OFFSET"
        + "\n\nOFFSET = 100\ncalc.globals.OFFSET = OFFSET\n\n\ndef make():\n    return calc(1)\n",
    ),
    case(
        name="glob_str_unicode",
        description="global str constant with non-ASCII",
        source=GLOBALS_HEAD % "GREETING + a"
        + '\n\ncalc.globals.GREETING = "héllo 中文 😀 "\n\n\ndef make():\n    return calc("x")\n',
    ),
    case(
        name="glob_dict",
        description="global dict constant (insertion order not sorted)",
        source=GLOBALS_HEAD % "TABLE[a]"
        + '\n\ncalc.globals.TABLE = {"b": 2, "a": [1, 2.5], "é": None}\n\n\ndef make():\n    return calc("a")\n',
    ),
    case(
        name="glob_function",
        description="global helper function (with decorator-free source and a comment)",
        source=GLOBALS_HEAD % "helper(a) + 1"
        + src(
            """


            def helper(x):
                # doubles x
                return 2 * x


            calc.globals.helper = helper


            def make():
                return calc(20)
            """
        ),
    ),
    case(
        name="glob_class",
        description="global class",
        source=GLOBALS_HEAD % "Point(a, 2).norm2()"
        + src(
            '''


            class Point:
                """A point."""

                def __init__(self, x, y):
                    self.x = x
                    self.y = y

                def norm2(self):
                    return self.x ** 2 + self.y ** 2


            calc.globals.Point = Point


            def make():
                return calc(3)
            '''
        ),
    ),
    case(
        name="glob_multiple_ordering",
        description="several globals set in non-sorted order (sorted by name in main)",
        source=GLOBALS_HEAD % "helper(a) + zeta + Alpha + len(mid) + (none is None)"
        + src(
            """


            def helper(x):
                return x * 10


            calc.globals.zeta = 0.1
            calc.globals.mid = (1, 2)
            calc.globals.helper = helper
            calc.globals.Alpha = 1e16
            calc.globals.none = None
            calc.globals.__hidden__ = 5


            def make():
                return calc(1)
            """
        ),
    ),
    case(
        name="glob_alias",
        description="global function stored under a different name",
        source=GLOBALS_HEAD % "double(a)"
        + src(
            """


            def _double_impl(x):
                return 2 * x


            calc.globals.double = _double_impl


            def make():
                return calc(21)
            """
        ),
    ),
    case(
        name="glob_nested_function",
        description="global helper function defined inside another function (indented source)",
        source=GLOBALS_HEAD % "helper(a)"
        + src(
            """


            def factory():
                def helper(x):
                    return x + 1
                return helper


            calc.globals.helper = factory()


            def make():
                return calc(41)
            """
        ),
    ),
    case(
        name="glob_lambda",
        description="global lambda (source is the whole assignment line)",
        source=GLOBALS_HEAD % "sq(a)"
        + "\n\nsq = lambda x: x * x  # noqa: E731\ncalc.globals.sq = sq\n\n\ndef make():\n    return calc(7)\n",
    ),
]

# ---------------------------------------------------------------- .modules
HELPERMOD = src(
    '''

    """Helper module."""

    FACTOR = 3


    def triple(x):
        return FACTOR * x

    '''
)

PKG_INIT = src(
    """
    from .sub import twice
    from . import consts

    NAME = "pkg"
    """
)
PKG_SUB = src(
    """
    from .consts import BASE


    def twice(x):
        return 2 * x + BASE
    """
)
PKG_CONSTS = "BASE = 0\n"
PKG_UNUSED = "UNUSED = 1\n"

CASES += [
    case(
        name="mod_single_file",
        description="a single-file module (leading/trailing blank lines in the file)",
        files={"helpermod_single.py": HELPERMOD},
        source=src(
            """
            from seamless.transformer import delayed

            import helpermod_single


            @delayed
            def calc(a):
                return helpermod_single.triple(a)


            calc.modules.helpermod_single = helpermod_single


            def make():
                return calc(14)
            """
        ),
    ),
    case(
        name="mod_single_file_import_inside",
        description="module used via an import statement inside the function",
        files={"helpermod_imp.py": HELPERMOD},
        source=src(
            """
            from seamless.transformer import delayed

            import helpermod_imp


            @delayed
            def calc(a):
                import helpermod_imp
                return helpermod_imp.triple(a)


            calc.modules.helpermod_imp = helpermod_imp


            def make():
                return calc(14)
            """
        ),
    ),
    case(
        name="mod_package",
        description="a package (__init__ + submodules; one submodule never imported)",
        files={
            "helperpkg/__init__.py": PKG_INIT,
            "helperpkg/sub.py": PKG_SUB,
            "helperpkg/consts.py": PKG_CONSTS,
            "helperpkg/unused.py": PKG_UNUSED,
        },
        source=src(
            """
            from seamless.transformer import delayed

            import helperpkg


            @delayed
            def calc(a):
                x = helperpkg.twice(a)
                return x + len(helperpkg.NAME)


            calc.modules.helperpkg = helperpkg


            def make():
                return calc(18)
            """
        ),
    ),
    case(
        name="mod_dict",
        description="a module given as a module-definition dict",
        source=src(
            """
            from seamless.transformer import delayed


            @delayed
            def calc(a):
                return mymod.K + a


            calc.modules.mymod = {
                "code": "K = 40\\n",
                "language": "python",
                "type": "interpreted",
            }


            def make():
                return calc(2)
            """
        ),
    ),
    case(
        name="mod_main_plus_globals",
        description="modules.main together with .globals (merged into one main)",
        files={"helpermod_main.py": HELPERMOD},
        source=src(
            """
            from seamless.transformer import delayed

            import helpermod_main


            @delayed
            def calc(a):
                return triple(a) + EXTRA


            calc.modules.main = helpermod_main
            calc.globals.EXTRA = 0


            def make():
                return calc(14)
            """
        ),
    ),
]

# ---------------------------------------------------------------- code strings
CASES += [
    case(
        name="str_block_celltypes",
        description='delayed("result = a + b") with .celltypes int',
        source=src(
            """
            from seamless.transformer import delayed

            tf = delayed("result = a + b")
            tf.celltypes.a = "int"
            tf.celltypes.b = "int"


            def make():
                return tf(a=19, b=23)
            """
        ),
    ),
    case(
        name="str_block_args",
        description='delayed("result = a + b") with .args (mixed)',
        source=src(
            """
            from seamless.transformer import delayed

            tf = delayed("result = a + b\\n\\n")
            tf.args.a = 19
            tf.args.b = 23


            def make():
                return tf()
            """
        ),
    ),
    case(
        name="str_block_multiline",
        description="multi-line code block string",
        source=src(
            '''
            from seamless.transformer import delayed

            CODE = """
            c = a * 2
            result = c + b
            """
            tf = delayed(CODE)
            tf.args.a = 10
            tf.args.b = 22


            def make():
                return tf()
            '''
        ),
    ),
    case(
        name="str_lambda",
        description="lambda code string",
        source=src(
            """
            from seamless.transformer import delayed

            tf = delayed("lambda a, b: a + b")
            tf.args.a = 19
            tf.args.b = 23


            def make():
                return tf()
            """
        ),
    ),
    case(
        name="str_expression",
        description="expression code string",
        source=src(
            """
            from seamless.transformer import delayed

            tf = delayed("a * b + 1")
            tf.args.a = 6
            tf.args.b = 7


            def make():
                return tf()
            """
        ),
    ),
    case(
        name="str_def",
        description="code string containing a def (function mode)",
        source=src(
            """
            from seamless.transformer import delayed

            tf = delayed("def f(a, b):\\n    return a - b\\n")
            tf.celltypes.a = int
            tf.args.b = 8


            def make():
                return tf(a=50)
            """
        ),
    ),
    case(
        name="str_positional_refused",
        description="positional arguments to a code-string transformer",
        source=src(
            """
            from seamless.transformer import delayed

            tf = delayed("result = a + b")


            def make():
                return tf(19, 23)
            """
        ),
    ),
    case(
        name="bash_result_file",
        description="bash code string with int and text pins, writing RESULT",
        source=src(
            """
            from seamless.transformer import delayed

            CODE = 'echo $((n * 2)) > RESULT\\necho "$msg" >> RESULT'
            tf = delayed(CODE, language="bash")
            tf.celltypes.n = "int"
            tf.celltypes.msg = "text"
            tf.args.n = 21
            tf.args.msg = "héllo"


            def make():
                return tf()
            """
        ),
    ),
    case(
        name="bash_result_file_bytes",
        description="bash, result celltype bytes, pins given at call time",
        source=src(
            """
            from seamless.transformer import delayed

            tf = delayed("seq $n > RESULT", language="bash")
            tf.celltypes.n = "int"
            tf.celltypes.result = "bytes"


            def make():
                return tf(n=3)
            """
        ),
    ),
    case(
        name="bash_result_number",
        description="bash RESULT containing a number, result celltype mixed",
        source=src(
            """
            from seamless.transformer import delayed

            tf = delayed("echo $((a + b)) > RESULT", language="bash")
            tf.args.a = 19
            tf.args.b = 23


            def make():
                return tf()
            """
        ),
    ),
    case(
        name="bash_result_dir",
        description="bash code writing a RESULT/ directory",
        source=src(
            """
            from seamless.transformer import delayed

            CODE = '''mkdir -p RESULT/sub
            echo "$n" > RESULT/n.txt
            cat msg > RESULT/sub/msg.txt
            '''
            tf = delayed(CODE, language="bash")
            tf.celltypes.n = "int"
            tf.celltypes.msg = "text"


            def make():
                return tf(n=5, msg="dir é")
            """
        ),
    ),
    case(
        name="bash_direct",
        kind="direct",
        description="direct(code, language='bash')",
        source=src(
            """
            from seamless.transformer import direct

            tf = direct("echo $((a + b)) > RESULT", language="bash")
            tf.args.a = 19
            tf.args.b = 23


            def make():
                return tf()
            """
        ),
        expect_same_tf_as="bash_result_number",
    ),
]

# ---------------------------------------------------------------- dependencies
CASES += [
    celltype_case("dep_chain2", "", "add(add(1, 2), 3)", "chain of 2 transformations"),
    celltype_case(
        "dep_chain3", "", "add(add(add(1, 2), 3), 4)", "chain of 3 transformations"
    ),
    celltype_case(
        "dep_same_upstream_twice",
        "",
        "(lambda x: add(x, x))(add(2, 3))",
        "the same upstream Transformation object used for both arguments",
    ),
    case(
        name="dep_celltype_mismatch",
        description="upstream result celltype text feeding a mixed pin",
        source=src(
            """
            from seamless.transformer import delayed


            @delayed
            def upper(s):
                return s.upper()


            upper.celltypes.result = "text"


            @delayed
            def exclaim(s):
                return s + "!"


            def make():
                return exclaim(upper("abc"))
            """
        ),
    ),
    case(
        name="dep_into_int_pin",
        description="upstream mixed result feeding an int pin",
        source=src(
            """
            from seamless.transformer import delayed


            @delayed
            def add(a, b):
                return a + b


            @delayed
            def double(x):
                return 2 * x


            double.celltypes.x = "int"


            def make():
                return double(add(19, 23))
            """
        ),
    ),
    case(
        name="dep_failing_upstream",
        description="upstream raises: downstream construct fails",
        source=src(
            """
            from seamless.transformer import delayed


            @delayed
            def fail(a):
                raise ValueError("upstream boom")


            @delayed
            def add(a, b):
                return a + b


            def make():
                return add(fail(1), 2)
            """
        ),
    ),
]

# ---------------------------------------------------------------- orthogonal settings
ORTHO_INFO = src(
    """


    def info():
        return {
            "transformer_meta": dict(add.meta),
            "scratch": add.scratch,
            "local": add.local,
            "environment": add.environment._to_lowlevel(),
        }
    """
)

CASES += [
    celltype_case(
        "ortho_meta",
        'add.meta = {"ncores": 2, "custom": "é", "dropped": None}',
        "add(19, 23)",
        ".meta does not change the tf checksum",
        expect_same_tf_as="add_worked",
    ),
    celltype_case(
        "ortho_scratch",
        "add.scratch = True",
        "add(19, 23)",
        ".scratch does not change the tf checksum",
        expect_same_tf_as="add_worked",
    ),
    celltype_case(
        "ortho_local_direct_print",
        "add.local = True\nadd.direct_print = True\nadd.driver = False",
        "add(19, 23)",
        ".local / .direct_print / .driver do not change the tf checksum",
        expect_same_tf_as="add_worked",
    ),
    celltype_case(
        "ortho_env_conda_env",
        'add.environment.set_conda_env("myenv")',
        "add(19, 23)",
        ".environment.set_conda_env does not change the tf checksum",
        expect_same_tf_as="add_worked",
    ),
    celltype_case(
        "ortho_env_conda_yaml",
        'add.environment.set_conda("dependencies:\\n  - python\\n  - numpy\\n")',
        "add(19, 23)",
        ".environment.set_conda (YAML) does not change the tf checksum",
        expect_same_tf_as="add_worked",
    ),
    celltype_case(
        "ortho_env_docker_which_powers",
        'add.environment.set_docker({"name": "ubuntu:24.04"})\n'
        'add.environment.set_which(["bash", "ls"])\n'
        'add.environment.set_powers({"network": True})',
        "add(19, 23)",
        ".environment docker/which/powers do not change the tf checksum",
        expect_same_tf_as="add_worked",
    ),
]
for _case in CASES[-6:]:
    _case["source"] += ORTHO_INFO

# ---------------------------------------------------------------- quirks
CASES += [
    case(
        name="quirk_code_64_chars",
        description="function source whose decoded code value is exactly 64 characters",
        source=src(
            """
            from seamless.transformer import delayed


            @delayed
            def calc(a):
                return a + len('xxxxxxxxxxxxxxxxxxxxxxxxxxxxx')


            def make():
                return calc(1)
            """
        ),
        note="upstream treats a 64-character code value as a checksum at run time",
    ),
]

# ---------------------------------------------------------------- nested
CASES += [
    case(
        name="nested_direct",
        description="transformation whose code defines and calls a direct transformer",
        source=src(
            """
            from seamless.transformer import delayed


            @delayed
            def outer(n):
                from seamless.transformer import direct

                @direct
                def inner(x):
                    return x * 2

                return inner(n) + 1


            def make():
                return outer(20)
            """
        ),
    ),
    case(
        name="nested_delayed_run",
        description="transformation whose code builds a delayed transformation and runs it",
        source=src(
            """
            from seamless.transformer import delayed


            @delayed
            def outer(n):
                from seamless.transformer import delayed

                @delayed
                def inner(x, y):
                    return x * y

                return inner(n, 3).run()


            def make():
                return outer(14)
            """
        ),
    ),
]


# ====================================================================== machinery

ADDR_RE = re.compile(r"0x[0-9a-fA-F]{6,}")


def jsonable(value):
    if isinstance(value, bytes):
        return {"__bytes_b64__": base64.b64encode(value).decode()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict) or type(value).__name__ == "mappingproxy":
        return {str(k): jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "hex") and type(value).__name__ == "Checksum":
        return value.hex()
    if type(value).__name__ == "Buffer":
        return {"__Buffer_b64__": base64.b64encode(bytes(value.content)).decode()}
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    return {"__repr__": repr(value)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", help="output file (default: stdout)")
    parser.add_argument("-k", dest="only", help="only cases whose name contains this")
    args = parser.parse_args()
    if args.output:
        args.output = os.path.abspath(args.output)

    # Keep the real stdout for the JSONL; everything else printed goes to stderr.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    tmproot = os.path.join(tempfile.gettempdir(), "seamless-python-vectors")
    shutil.rmtree(tmproot, ignore_errors=True)
    os.makedirs(tmproot)
    os.chdir(tmproot)

    def clean(text):
        if text is None:
            return None
        text = str(text).replace(tmproot, "<TMP>")
        return ADDR_RE.sub("0xADDR", text)

    import seamless
    import seamless_transformer.transformation_class as tc
    from seamless import Checksum
    from seamless_transformer import Transformation
    from seamless_transformer.transformation_cache import get_transformation_cache

    def resolve_bytes(checksum_hex):
        try:
            buf = Checksum(checksum_hex).resolve()
        except Exception:  # noqa: BLE001 - unknown checksum
            return None
        if buf is None:
            return None
        return bytes(buf.content)

    spied = []
    orig_tf_get_buffer = tc.tf_get_buffer

    spied_pin_buffers = {}

    def spy_tf_get_buffer(transformation_dict):
        buffer = orig_tf_get_buffer(transformation_dict)
        spied.append(buffer)
        # Grab the pin buffers now, while upstream still holds references
        # (e.g. a direct call releases them as soon as it returns).
        for key, value in transformation_dict.items():
            if key.startswith("__") or not isinstance(value, (list, tuple)):
                continue
            pin_cs = value[2]
            if pin_cs is None:
                continue
            pin_cs = pin_cs if isinstance(pin_cs, str) else pin_cs.hex()
            if pin_cs not in spied_pin_buffers:
                data = resolve_bytes(pin_cs)
                if data is not None:
                    spied_pin_buffers[pin_cs] = data
        return buffer

    tc.tf_get_buffer = spy_tf_get_buffer

    tf_by_case = {}
    records = []
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "duplicate case names"

    for case in CASES:
        name = case["name"]
        if args.only and args.only not in name:
            continue
        print(f"=== {name}", file=sys.stderr, flush=True)
        kind = case.get("kind", "delayed")
        rec = {
            "name": name,
            "description": case["description"],
            "source": case["source"],
        }
        if case.get("files"):
            rec["files"] = case["files"]
        casedir = os.path.join(tmproot, name)
        os.makedirs(casedir)
        for relpath, text in (case.get("files") or {}).items():
            path = os.path.join(casedir, relpath)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        modname = "pyvec_" + name
        with open(os.path.join(casedir, modname + ".py"), "w", encoding="utf-8") as f:
            f.write(case["source"])
        expr = case.get("expr", "make()")
        rec.update({"module": modname, "expr": expr, "kind": kind})
        if case.get("note"):
            rec["note"] = case["note"]

        modules_before = set(sys.modules)
        sys.path.insert(0, casedir)
        importlib.invalidate_caches()
        spied.clear()
        obj = None
        try:
            module = importlib.import_module(modname)
            obj = eval(expr, module.__dict__)
        except Exception as exc:  # noqa: BLE001
            rec["make_error"] = clean(f"{type(exc).__name__}: {exc}")
            module = sys.modules.get(modname)

        tf_checksum = None
        if isinstance(obj, Transformation):
            cs = obj.construct()
            if cs is None:
                rec["construct_error"] = clean(obj.exception)
            else:
                tf_checksum = cs.hex()
        elif kind == "direct" and spied:
            tf_checksum = spied[0].get_checksum().hex()

        # run (results are kept aside so that the identity keys come first)
        runrec = {}
        if case.get("run", True) is False:
            runrec["run"] = False
        elif isinstance(obj, Transformation) and tf_checksum is not None:
            try:
                value = obj.run()
            except Exception as exc:  # noqa: BLE001
                runrec["run_error"] = clean(
                    obj.exception or f"{type(exc).__name__}: {exc}"
                )
            else:
                rcs = obj.result_checksum
                runrec["result_checksum"] = rcs.hex() if rcs is not None else None
                if rcs is not None:
                    data = resolve_bytes(rcs.hex())
                    if data is not None:
                        runrec["result_buffer"] = base64.b64encode(data).decode()
                runrec["result_value"] = jsonable(value)
        elif kind == "direct" and "make_error" not in rec:
            runrec["result_value"] = jsonable(obj)
            if tf_checksum is not None:
                cache = get_transformation_cache()
                rcs = cache._transformation_cache.get(Checksum(tf_checksum))
                if rcs is not None:
                    runrec["result_checksum"] = rcs.hex()
                    data = resolve_bytes(rcs.hex())
                    if data is not None:
                        runrec["result_buffer"] = base64.b64encode(data).decode()
        if kind == "direct" and "make_error" in rec and tf_checksum is not None:
            runrec["run_error"] = rec.pop("make_error")

        # after running: nested/dependency constructions are known too
        constructed = []
        spied_buffers = {}
        for buf in spied:
            h = buf.get_checksum().hex()
            if h not in spied_buffers:
                spied_buffers[h] = bytes(buf.content)
                constructed.append(h)

        if tf_checksum is not None:
            rec["tf_checksum"] = tf_checksum
            ident_bytes = resolve_bytes(tf_checksum)
            if ident_bytes is None:
                ident_bytes = spied_buffers.get(tf_checksum)
                rec["identity_note"] = (
                    "identity buffer taken from the spy, not resolvable"
                )
            rec["identity"] = json.loads(ident_bytes)
            rec["identity_buffer"] = ident_bytes.decode("utf-8")
        if isinstance(obj, Transformation):
            template = getattr(obj, "_definition_payload_template", None)
            if template is not None:
                rec["full_dict"] = jsonable(template)
            rec["meta"] = jsonable(obj.meta)
            rec["scratch"] = obj.scratch

        # buffers of every pin checksum
        identities = {}
        if tf_checksum is not None:
            identities[tf_checksum] = rec["identity"]
        others = {}
        for h in constructed:
            if h != tf_checksum:
                others[h] = json.loads(spied_buffers[h])
                identities[h] = others[h]
        buffers = {}
        for ident in identities.values():
            for key, value in sorted(ident.items()):
                if key.startswith("__"):
                    continue
                pin_cs = value[2]
                if pin_cs is None or pin_cs in buffers:
                    continue
                data = resolve_bytes(pin_cs)
                if data is None:
                    data = spied_pin_buffers.get(pin_cs)
                buffers[pin_cs] = (
                    None if data is None else base64.b64encode(data).decode()
                )
        rec["buffers"] = buffers
        rec["constructed"] = constructed
        if others:
            rec["other_identities"] = others

        rec.update(runrec)

        if module is not None and hasattr(module, "info"):
            try:
                rec["extra"] = jsonable(module.info())
            except Exception as exc:  # noqa: BLE001
                rec["extra"] = {"__error__": clean(f"{type(exc).__name__}: {exc}")}

        tf_by_case[name] = tf_checksum
        records.append(rec)

        sys.path.remove(casedir)
        for modname2 in set(sys.modules) - modules_before:
            if modname2 == modname or modname2.split(".")[0] in {
                os.path.splitext(p.split("/")[0])[0] for p in (case.get("files") or {})
            }:
                del sys.modules[modname2]

    # same-checksum expectations (may refer to later cases)
    for rec in records:
        case = next(c for c in CASES if c["name"] == rec["name"])
        other = case.get("expect_same_tf_as")
        if other and other in tf_by_case:
            rec["expect_same_tf_as"] = other
            rec["same_tf_as_ok"] = (
                rec.get("tf_checksum") is not None
                and rec.get("tf_checksum") == tf_by_case[other]
            )

    lines = "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(lines)
    else:
        with os.fdopen(out_fd, "w", encoding="utf-8") as f:
            f.write(lines)
    print(f"{len(records)} cases written", file=sys.stderr, flush=True)
    try:
        seamless.close()
    except Exception as exc:  # noqa: BLE001
        print(f"seamless.close() failed: {exc}", file=sys.stderr)


if __name__ == "__main__":
    main()
