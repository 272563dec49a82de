"""The review app: ``streamlit run app.py -- --runs DIR`` (or ``refiner app --runs DIR``).

A thin entry point; the page lives in :mod:`refiner.review_app` so it ships with the package.
"""

from refiner.review_app import main

main()
