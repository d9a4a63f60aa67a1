"""One run's actions on Compare: download its files, name it, repeat it with seeds, delete it (not a page)."""

from __future__ import annotations

import streamlit as st

from kmnist_core import service, stats, views
from kmnist_core.errors import KmnistError
from kmnist_core.records import ACTIVE
from kmnist_core.store import RunInfo
from pages import common

RUN = "compare_run"  # the run the actions apply to
CONFIRM = "compare_confirm_delete"  # run id waiting for the user to confirm its deletion
DONE = "compare_done"  # what the last action did, shown once on the next run
MIME = {".keras": "application/zip", ".npz": "application/zip", ".json": "application/json", ".csv": "text/csv"}
ss = st.session_state


def notice() -> None:
    """What the last action did, once (call it at the top of the page: the action reran the page)."""
    if message := ss.pop(DONE, None):
        st.info(message, icon=":material/check_circle:")


def show(runs: list[RunInfo]) -> None:
    """A run picker and its actions."""
    labels = {r.run_id: views.run_label(r) for r in runs}
    run_id = st.selectbox("Run", list(labels), key=RUN, format_func=labels.get, index=None,
                          placeholder="choose a run")
    info = next((r for r in runs if r.run_id == run_id), None)
    if info is None:
        return
    if info.completed:
        _downloads(info)
    _label(info)
    if info.config is not None:
        _repeat(info)
    if info.status not in ACTIVE:
        _delete(info)


def _downloads(info: RunInfo) -> None:
    data = common.dataset()
    if data is None:
        return
    files = service.export_files(common.store(), info.run_id, data)
    columns = st.columns(len(files))
    for column, (name, content) in zip(columns, files.items(), strict=True):
        try:
            column.download_button(name, content, file_name=f"{info.run_id}-{name}", key=f"compare_dl_{name}",
                                   mime=MIME[name[name.rindex("."):]], icon=":material/download:",
                                   on_click="ignore")
        except KmnistError as e:  # predictions of a run tested on other data: one line, the rest still work
            column.caption(str(e))


def _label(info: RunInfo) -> None:
    with st.form(key=f"compare_label_{info.run_id}", border=False):
        name, note = st.columns([1, 2])
        new_name = name.text_input("Name", value=info.label.get("name", ""), placeholder=info.name,
                                   max_chars=80, help="Shown wherever runs are listed; empty: a name from its config")
        new_note = note.text_input("Note", value=info.note, max_chars=2000)
        tags = st.text_input("Tags (comma-separated)", value=", ".join(info.tags))
        if st.form_submit_button("Save name, note and tags", icon=":material/save:"):
            common.store().relabel(info.run_id, name=new_name, note=new_note, tags=tags.split(","))
            ss[DONE] = f"run {info.run_id} saved"
            st.rerun()


def _repeat(info: RunInfo) -> None:
    q = common.queue()
    left, right = st.columns([1, 3])
    n = left.number_input("Seeds", 2, 20, 5, key="compare_repeat_n")
    if right.button(f"Repeat with {n} seeds", key="compare_repeat", disabled=q is None, icon=":material/repeat:",
                    help="The same configuration with the seeds after its own; trained ones come from the store"):
        ids = stats.submit_seeds(q, info.config, n)
        ss[DONE] = f"{len(ids)} runs of {info.config.summary()} queued or found; group them below by seed"
        st.rerun()


def _delete(info: RunInfo) -> None:
    if ss.get(CONFIRM) != info.run_id:
        if st.button("Delete…", key="compare_delete", icon=":material/delete:"):
            ss[CONFIRM] = info.run_id
            st.rerun()
        return
    st.warning(f"Delete run {info.run_id}? Its model, curves and results are removed for good.",
               icon=":material/warning:")
    yes, no = st.columns(2)
    if yes.button(f"Yes, delete {info.run_id}", key="compare_delete_yes", type="primary"):
        ss.pop(CONFIRM, None)
        ss.pop(RUN, None)
        try:
            service.delete_run(common.store(), info.run_id)
            ss[DONE] = f"run {info.run_id} deleted"
        except KmnistError as e:
            ss[DONE] = str(e)
        st.rerun()
    if no.button("Cancel", key="compare_delete_no"):
        ss.pop(CONFIRM, None)
        st.rerun()
