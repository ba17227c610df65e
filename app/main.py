"""Token Fusion Lab: ``streamlit run app/main.py [-- --checkpoints DIR]``.

Declares the pages and draws the shared sidebar; each page lives in ``app/views/``. (Not ``pages/``:
Streamlit serves a ``pages/`` folder's scripts on their own, without this file's sidebar, to a link
opened on a server that has not run this file yet.) Both run guarded: an unexpected error is shown as
a plain message with its details folded, never a traceback. What loads ahead of need: ``app/preload.py``.
"""
import sys
from pathlib import Path

# `streamlit run` puts app/ on the import path, not the repository root that holds tokenfusion/ and app/
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st  # noqa: E402

from app import timing  # noqa: E402
from app.preload import load_ahead, preload_chart_module, wait_for_background  # noqa: E402

with timing.run("page"):  # where this run's time goes, when the benchmark asks (off by default)
    # a local file: a material icon or an emoji would be fetched from a font or image host by the browser
    st.set_page_config(page_title="Token Fusion Lab", page_icon=str(Path(__file__).parent / "static" / "icon.png"),
                       layout="wide")
    preload_chart_module()  # before the imports below (torch, the models: seconds on a first run)
    wait_for_background()  # nothing imports beside the background thread

    with timing.phase("imports"):
        from app.sidebar import draw_sidebar, selection
        from app import url
        from app.ui import guarded

    page = st.navigation([
        st.Page("views/explore.py", title="Explore", icon=":material/visibility:", default=True),
        st.Page("views/compare.py", title="Compare", icon=":material/compare:"),
        st.Page("views/learn.py", title="Learn", icon=":material/school:"),
        st.Page("views/faithfulness.py", title="Faithfulness", icon=":material/fact_check:"),
        st.Page("views/analysis.py", title="Analysis", icon=":material/query_stats:"),
        st.Page("views/model_card.py", title="Model card", icon=":material/description:"),
    ])
    drawn = guarded(draw_sidebar, "the sidebar")
    if drawn:  # every page reads the sidebar's selection
        guarded(page.run, f"the {page.title} page")
    guarded(url.write, "the link to this view")
    if drawn:  # the page is drawn: load what the next clicks need while it is read
        guarded(lambda: load_ahead(selection().models), "loading ahead")
