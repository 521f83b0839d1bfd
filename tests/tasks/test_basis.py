"""The double-billing guard of corrections (`tasks.common.check_basis`), on a real ledger
and store, without a flow."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.common import (
    BasisChangedError,
    basis_rows,
    check_basis,
    ledger,
    object_store,
    stage_basis,
)
from tests.infra.test_db import new_invoice
from tests.support.harness import make_settings


def test_an_account_billed_after_the_basis_was_taken_stops_a_re_rating(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    db = ledger(settings)
    db.start_run("bill-1", "2026-10", None)
    assert db.publish_invoice(new_invoice("ACC-1", "2026-10", run_id="bill-1"))
    db.start_run("rerate-1", "2026-10", None, kind="rerate")
    basis = db.billing_basis("2026-10")
    stage_basis(object_store(settings), "rerate-1", basis_rows(basis, "2026-10", set(basis)))
    check_basis(settings, "rerate-1", {"ACC-1"}, "2026-10")  # nothing changed

    # ACC-2 is invoiced for October by another run after the re-rating took its basis.
    db.start_run("bill-2", "2026-10", None)
    assert db.publish_invoice(new_invoice("ACC-2", "2026-10", run_id="bill-2"))

    with pytest.raises(BasisChangedError, match=r"ACC-2 for 2026-10 \(by bill-2\)"):
        check_basis(settings, "rerate-1", {"ACC-1", "ACC-2"}, "2026-10")
    # Publishing only ACC-1's note is still safe.
    check_basis(settings, "rerate-1", {"ACC-1"}, "2026-10")
