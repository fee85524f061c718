# Runs the code given on stdin the way a notebook cell runs: statements, then the value of a
# last bare expression, which goes to /.temper/value as its repr. Tracebacks show the user's
# code, not this driver.
import ast
import io
import linecache
import os
import sys
import traceback

source = sys.stdin.read()
sys.stdin = io.StringIO()
sys.argv = ["<code>"]
linecache.cache["<code>"] = (len(source), None, source.splitlines(True), "<code>")
os.chdir("/scratch")


def run():
    tree = ast.parse(source, "<code>")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    scope = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(compile(tree, "<code>", "exec"), scope)
    if last is not None:
        return eval(compile(last, "<code>", "eval"), scope)


try:
    value = run()
except SystemExit:
    raise
except BaseException as error:
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != "<code>":
        tb = tb.tb_next
    traceback.print_exception(type(error), error, tb)
    sys.exit(1)
if value is not None:
    with open("/.temper/value", "w") as out:
        out.write(repr(value)[:20000])
