#!/usr/bin/env python3
"""Run localstripe on 127.0.0.1 without its hard-coded /tmp pickle.

localstripe 1.15.10 binds '::' (every interface) and pickles its whole store
to /tmp/localstripe.pickle after every write: slow, and two instances (two
test runs, two worktrees) overwrite each other's data.  This launcher imports
localstripe's aiohttp app and replaces that persistence:

* default: in memory only (what the tests want: a fresh store per run);
* ``--store-file PATH``: load PATH at start-up (if it exists) and write it
  once at shutdown (what ``make run`` uses, so that data survives a restart).

Usage: python scripts/localstripe_server.py --port 8420 [--host 127.0.0.1]
       [--store-file var/localstripe.pickle]
"""

import argparse
import logging
import os
import pickle
import sys
import tempfile

from aiohttp import web
from aiohttp.web_log import AccessLogger
from localstripe import resources
from localstripe.server import app, store

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import localstripe_paypal  # noqa: E402  (beside this file; scripts/ is no package)


def _no_dump(self):
    return None


def _no_load(self):
    return None


def index_the_store():
    """localstripe lists a type by scanning its whole store (`StripeObject._api_list_all`), and
    exports every Charge with its refunds, listed that way: each PaymentIntent confirmed cost a
    few scans of everything ever created, so a 10,000-renewal burst slowed localstripe down as it
    went (bench/RESULTS.md, bench 6's profile: 97 % of its CPU in `Charge.refunds`). Real Stripe
    has no such cost. Here the store keeps an index by object type, in insertion order, and the
    listing reads it: the same objects in the same order, without the scan."""
    by_type = {}

    def kind(key):
        return key.split(":", 1)[0] if isinstance(key, str) and ":" in key else None

    def setitem(self, key, value):
        dict.__setitem__(self, key, value)
        if kind(key) is not None:
            by_type.setdefault(kind(key), {})[key] = value

    def delitem(self, key):
        dict.__delitem__(self, key)
        if kind(key) is not None:
            by_type.get(kind(key), {}).pop(key, None)

    def clear(self):
        dict.clear(self)
        by_type.clear()

    def rebuild():
        by_type.clear()
        for key, value in dict.items(store):
            if kind(key) is not None:
                by_type.setdefault(kind(key), {})[key] = value

    list_all = resources.StripeObject._api_list_all.__func__

    def indexed_list_all(cls, url, limit=None, starting_after=None, **kwargs):
        if kwargs:  # localstripe's own refusal of unexpected arguments
            return list_all(cls, url, limit=limit, starting_after=starting_after, **kwargs)
        li = resources.List(url, limit=limit, starting_after=starting_after)
        li._list = list(by_type.get(cls.object, {}).values())
        return li

    resources.Store.__setitem__ = setitem
    resources.Store.__delitem__ = delitem
    resources.Store.clear = clear
    resources.StripeObject._api_list_all = classmethod(indexed_list_all)
    rebuild()
    return rebuild


def load_store(path):
    try:
        with open(path, "rb") as f:
            old = pickle.load(f)
    except FileNotFoundError:
        return
    except Exception as exc:  # a corrupt/incompatible file: start empty
        logging.getLogger("localstripe").warning("ignoring unreadable store file %s: %s", path, exc)
        return
    store.clear()
    for key, value in old.items():
        store[key] = value


def save_store(path):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".localstripe-")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(dict(store), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("LOCALSTRIPE_PORT", 8420)))
    parser.add_argument(
        "--store-file",
        default=None,
        help="persist the store here (load at start, save at shutdown); default: memory only",
    )
    args = parser.parse_args(argv)

    # Stripe's PayPal payment method, which localstripe lacks (docs/payment-methods.md).
    localstripe_paypal.install(app)
    # Listing by type without scanning everything (the docstring says why).
    index_the_store()

    # Per-request persistence off, whatever the mode.
    resources.Store.dump_to_disk = _no_dump
    resources.Store.try_load_from_disk = _no_load

    if args.store_file:
        load_store(args.store_file)

        async def _save(_app):
            save_store(args.store_file)

        app.on_cleanup.append(_save)

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    access_log = logging.getLogger("aiohttp.access")
    access_log.setLevel(logging.INFO)

    web.run_app(
        app,
        host=args.host,
        port=args.port,
        access_log=access_log,
        # The line is written when the answer is sent; the request's own time (%Tf, seconds) at
        # the end lets bench/common.py place each write when it reached the server, which is
        # where the processor counts its rate limit.
        access_log_format=AccessLogger.LOG_FORMAT + " %Tf",
        print=lambda msg: print(msg, file=sys.stderr, flush=True),
    )


if __name__ == "__main__":
    main()
