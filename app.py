"""The review app: ``streamlit run app.py -- --runs DIR`` (or ``refiner app --runs DIR``, or ``python app.py``).

A thin entry point; the page lives in :mod:`refiner.review.page` so it ships with the package.
Run with plain ``python app.py [--runs DIR] [--read-only]``, it starts Streamlit on 127.0.0.1 itself.
Under ``streamlit run`` the page refuses to serve unless the server listens on loopback or
``--allow-remote`` is given after ``--`` (Streamlit's socket is open before this file runs).
"""

import sys

if __name__ == "__main__" and "streamlit" not in sys.modules:
    from refiner.cli import main as cli_main

    sys.exit(cli_main(["app", *sys.argv[1:]]))  # binds 127.0.0.1 unless told otherwise

from refiner.review.page import main  # noqa: E402 - after the plain-python launch above

main()
