"""Compare page: every run beside the reference study's numbers; curves; one run's actions; seed groups."""

from __future__ import annotations

import streamlit as st

from kmnist_core import charts, service, stats, views
from kmnist_core.config import REFERENCE_PRESETS
from pages import common, run_actions

COLUMN_CONFIG = {
    "weight decay": st.column_config.NumberColumn(format="%g"),
    "learning rate": st.column_config.NumberColumn(format="%g"),
    "best val accuracy": st.column_config.NumberColumn(format="%.4f"),
    "test accuracy": st.column_config.NumberColumn(format="%.4f"),
    "train time (s)": st.column_config.NumberColumn(format="%.1f"),
    "parameters": st.column_config.NumberColumn(format="localized"),
}


def _table(runs) -> None:
    cached = common.baselines()
    table = views.compare_table(runs, views.reported_rows() + (views.baseline_rows(cached) if cached else []))
    st.caption("Rows with source **reported** are the reference study's published numbers, not runs of ours; "
               "**baseline** rows are classic k-NN classifiers fitted here on the same data; "
               "**measured** rows are runs in this store. Click a column header to sort.")
    st.dataframe(table, key="compare_table", hide_index=True, column_config=COLUMN_CONFIG)
    if cached is None:
        common.compute_baselines_button("compare_baselines")
    st.download_button("Download CSV", table.to_csv(index=False).encode(), file_name="kmnist-runs.csv",
                       mime="text/csv", key="compare_csv", icon=":material/download:")


def _references() -> None:
    q = common.queue()
    hint = "Queues " + ", ".join(REFERENCE_PRESETS) + "; configurations already trained come from the store"
    if st.button("Run the four reference configurations", key="compare_run_references", disabled=q is None,
                 help=hint):
        _, cached = service.submit_presets(q, REFERENCE_PRESETS)
        queued = len(REFERENCE_PRESETS) - cached
        st.success(f"{queued} queued, {cached} already in the store; the table updates as they finish.",
                   icon=":material/playlist_add_check:")
    if q is not None:
        active = q.active()
        if active:
            st.caption("In progress: " + "; ".join(f"{s.config.describe()}: {views.progress_text(s)}" for s in active))


def _curves(runs) -> None:
    with_history = [r for r in runs if r.history]
    if not with_history:
        return
    labels = {r.run_id: views.run_label(r) for r in with_history}
    default = [r.run_id for r in service.completed_runs(with_history)[:3]]
    left, right = st.columns([3, 1])
    chosen = left.multiselect("Runs to overlay", list(labels), default=default, key="compare_overlay",
                              bind="query-params",
                              format_func=labels.get)
    metric = right.selectbox("Curve", list(charts.CURVE_METRICS), key="compare_metric", bind="query-params",
                             format_func=charts.CURVE_METRICS.get)
    by_id = {r.run_id: r for r in with_history}
    histories = {labels[rid]: by_id[rid].history for rid in chosen}
    st.plotly_chart(charts.overlay_curves(histories, metric), key="compare_curves")


def _parallel_coordinates(completed) -> None:
    """Drawn only while its expander is open: Plotly's parallel coordinates use WebGL, about 3 s of a browser
    without a GPU however few the runs (measured), so the page does not pay for it on every visit."""
    if not completed:
        return
    panel = st.expander("Hyperparameters against test accuracy", key="compare_parcoords_open",
                        icon=":material/ssid_chart:", on_change="rerun", bind="query-params")
    if panel.open:
        with panel:
            st.caption(f"One line per completed run ({len(completed):,}), coloured by its test accuracy.")
            st.plotly_chart(charts.parallel_coordinates(views.compare_table(completed)), key="compare_parcoords")


def _workers() -> None:
    """Where training runs: each Dask worker, its host and threads, busy or not, and its data check."""
    q = common.queue()
    if q is None:
        return
    with st.expander("Workers", key="compare_workers_open", icon=":material/dns:"):
        st.caption(f"Jobs train on {q.engine.where}.")
        workers = q.workers()
        if problem := q.engine_problem():
            st.error(problem, icon=":material/error:")
        for w in workers:
            if not w.usable and w.state != "starting":
                st.warning(w.line, icon=":material/warning:")
        with st.container(key="compare_workers_panel"):
            if workers:
                st.caption(views.workers_line(workers))
                st.dataframe(views.workers_table(workers), hide_index=True, key="compare_workers")
            elif not problem:
                st.caption("No worker has joined yet.")


def _groups(runs) -> None:
    """Runs that differ only in their seed, as groups with 95 % intervals; two groups compared (Welch)."""
    groups = stats.group_runs(runs, min_size=2)
    if not groups:
        st.caption("No configuration has runs with several seeds yet: pick a run above and repeat it with seeds.")
        return
    st.dataframe(views.groups_table(groups), hide_index=True, key="compare_groups")
    labels = {i: f"{g.config.summary()} (n = {g.n})" for i, g in enumerate(groups)}
    left, right = st.columns(2)
    a = left.selectbox("Group", list(labels), key="compare_group_a", format_func=labels.get,
                       bind="query-params")
    b = right.selectbox("against", list(labels), key="compare_group_b", format_func=labels.get, bind="query-params",
                        index=min(1, len(labels) - 1))
    if a != b:
        for metric in stats.METRICS:
            st.markdown("- " + stats.compare(groups[a], groups[b], metric).sentence())


def main() -> None:
    st.title("Compare")
    run_actions.notice()
    runs_store = common.store()
    if runs_store is None:
        return
    runs = runs_store.list_runs()
    if st.toggle("Hide cancelled live runs", value=True, key="compare_hide_live", bind="query-params",
                 help="Runs that live mode on the Train page started and replaced before they finished"):
        runs = service.without_cancelled_live(runs)
    _table(runs)
    _references()
    _workers()
    completed = service.completed_runs(runs)
    if not completed:
        common.no_completed_run()
    _curves(runs)
    _parallel_coordinates(completed)
    if runs:
        st.subheader("A run: downloads, name, seeds, delete")
        run_actions.show(runs)
        st.subheader("Is a difference real? Runs grouped by seed")
        _groups(runs)


common.require_frame()
with common.guard():
    main()
