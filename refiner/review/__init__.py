"""What the review app shows, as pure functions, and the Streamlit page that lays them out.

* :mod:`~refiner.review.runs`: which runs there are, loading one, the view model;
* :mod:`~refiner.review.tables`: tables and texts (trials, decisions, overrides, evidence);
* :mod:`~refiner.review.summary_charts`: the charts every load draws (Vega-Lite);
* :mod:`~refiner.review.figures`: the figures drawn on demand (Plotly);
* :mod:`~refiner.review.chart_style`: the colours and axes both share;
* :mod:`~refiner.review.edits`: a person's edits, their checks, and export downloads;
* :mod:`~refiner.review.page`: the Streamlit page (``refiner app``, ``app.py``).

The page only lays out what the others give, so everything it shows is tested without a
browser. Three rules hold for the app's safety: a run is picked by *name* from the listing of the
runs folder, never joined to a path before it was found there; a run that cannot be read raises
one line, and the other runs stay usable; text from run files is data (:func:`md_escape`), and no
HTML is ever built from it.
"""

from refiner.review.chart_style import *  # noqa: F401,F403
from refiner.review.chart_style import __all__ as _style
from refiner.review.edits import *  # noqa: F401,F403
from refiner.review.edits import __all__ as _edits
from refiner.review.figures import *  # noqa: F401,F403
from refiner.review.figures import __all__ as _figures
from refiner.review.runs import *  # noqa: F401,F403
from refiner.review.runs import __all__ as _runs
from refiner.review.tables import *  # noqa: F401,F403
from refiner.review.tables import __all__ as _tables
from refiner.review.summary_charts import *  # noqa: F401,F403
from refiner.review.summary_charts import __all__ as _summary_charts
from refiner.text import fmt

__all__ = [*_runs, *_tables, *_summary_charts, *_figures, *_style, *_edits, "fmt"]
