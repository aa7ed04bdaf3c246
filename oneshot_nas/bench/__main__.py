"""python -m oneshot_nas.bench NAME [flags]: run one benchmark (NAME = a module of this package)."""
import importlib
import pkgutil
import sys

import oneshot_nas.bench as package


def names():
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in names():
        print(f"usage: python -m oneshot_nas.bench {{{'|'.join(names())}}} [flags]", file=sys.stderr)
        for name in names():
            doc = (importlib.import_module(f"oneshot_nas.bench.{name}").__doc__ or "").strip()
            print(f"  {name:10s} {doc.splitlines()[0] if doc else ''}", file=sys.stderr)
        sys.exit(2)
    importlib.import_module(f"oneshot_nas.bench.{sys.argv[1]}").main(sys.argv[2:])


if __name__ == "__main__":
    main()
