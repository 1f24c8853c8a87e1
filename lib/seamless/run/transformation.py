"""seamless-run's command line -> its transformation.

prepare() argtypes the command (command.py), hashes its inputs (inputs.py) and builds
the transformation dict: the bash code, file and directory pins with their __format__,
--var values, --metavar META__ pins, __env__ and __meta__; with its checksum and the
small buffers it refers to.
"""

import os

from seamless.checksum import calculate_checksum, serialize
from seamless.cli import UserError
from seamless.identity import transformation_checksum
from seamless.run.command import analyze, bash_code, targets_of


def is_name(text):
    """A shell variable name: [A-Za-z_][A-Za-z0-9_]* (without importing re)."""
    return text.isascii() and text.replace("_", "a").isalnum() and not text[0].isdigit() if text else False


def parse_assignments(items, flag):
    values = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"{flag} {item!r}: expected NAME=VALUE")
        if not is_name(name):
            raise UserError(f"{flag} {item!r}: the name must match [A-Za-z_][A-Za-z0-9_]*")
        if flag == "--metavar" and name.startswith("META__"):
            raise UserError(f"{flag} {item!r}: the name must not start with META__")
        if values.get(name, value) != value:
            raise UserError(f"{flag} {name} is given twice with different values")
        values[name] = value
    return values


def extra_inputs(args):
    paths = list(args.input)
    for listing in args.input_file:
        if not os.path.isfile(listing):
            raise UserError(f"--input-file {listing!r} is not a file")
        base = os.path.dirname(listing)
        with open(listing) as f:
            for line in f:
                line = line.strip()
                if line:  # upstream's help says empty lines are ignored; here they are
                    paths.append(os.path.join(base, line))
    return paths


def prepare(args, command):
    """Argtype, hash the inputs and build the transformation dict."""
    from seamless.run.inputs import resolve

    variables = parse_assignments(args.var, "--var")
    metavars = parse_assignments(args.metavar, "--metavar")
    analysis = analyze(command, primary=args.primary, rule1=args.rule1, rule2=args.rule2,
                       workdir=args.workdir, mapping=args.mapping or "literal",
                       extra_inputs=extra_inputs(args), captures=args.capture)
    if args.prologue:
        analysis.command = "; ".join(args.prologue + [analysis.command])
    targets = targets_of(analysis, args.capture)
    if not targets and (not args.download or args.scratch):
        raise UserError("the result would go to the screen, but downloading is off (-nd/--scratch); "
                        "name the result files with -cp")
    for item in analysis.inputs:
        resolve(item)
    code = bash_code(analysis, targets, metavars)
    buffers = {}  # checksum -> bytes of small buffers the transformation refers to

    def pin(buffer):
        cs = calculate_checksum(buffer)
        buffers[cs] = buffer
        return cs

    transformation = {
        "__language__": "bash",
        "__output__": ["result", "deepfolder" if targets else "bytes", None],
        "code": ["text", None, pin(serialize(code, "text"))],
    }
    formats = {}
    for item in analysis.inputs:
        if item.kind == "file":
            transformation[item.name] = ["bytes", None, item.checksum]
            formats[item.name] = {"filesystem": {"mode": "file", "optional": True}}
        else:
            transformation[item.name] = ["mixed", None, item.checksum]
            formats[item.name] = {"celltype": "deepfolder", "filesystem": {"mode": "directory", "optional": True}}
            if item.index is not None:
                buffers[item.checksum] = serialize(item.index, "plain")
    for name, value in variables.items():
        if name in transformation:
            raise UserError(f"--var {name} clashes with an input of the same name")
        transformation[name] = ["str", None, pin(serialize(value, "str"))]
    for name, value in metavars.items():
        transformation["META__" + name] = ["str", None, pin(serialize(value, "str"))]
    if formats:
        transformation["__format__"] = formats
    env = {}
    if args.docker:
        env["docker"] = {"name": args.docker}
    if args.conda:
        env["conda_environment"] = args.conda
    if env:
        transformation["__env__"] = env
    meta = {}
    if args.direct_print:
        meta["__direct_print__"] = True
    if args.write_remote_job:
        meta["write_remote_job"] = args.write_remote_job
    if meta:
        transformation["__meta__"] = meta
    return {"transformation": transformation, "checksum": transformation_checksum(transformation),
            "code": code, "inputs": analysis.inputs, "targets": targets, "buffers": buffers}
