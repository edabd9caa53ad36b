import numpy as np
import pandas as pd
import pytest

from testbed.core.energy import NodePower, add_energy


def test_energy_shares_add_up_to_node_energy():
    df = pd.DataFrame({
        "node": [0, 0, 1], "group": [0, 0, 0],
        "head_start_s": [0.0, 1.0, 0.5], "encode_end_s": [0.1, 1.2, 0.6],
        "tx_start_s": [0.1, 1.2, np.nan], "tx_end_s": [0.15, 1.3, np.nan],
        "downlink_start_s": [0.2, 1.4, np.nan], "downlink_end_s": [0.21, 1.41, np.nan],
    })
    out = add_energy(df, {0: NodePower(idle_w=2.0, busy_w=6.0, radio_tx_w=1.0, radio_rx_w=0.5)}, horizon_s=10.0)
    assert out["energy_compute_j"].tolist() == pytest.approx([0.4, 0.8, 0.4])
    assert out["energy_radio_j"].tolist() == pytest.approx([0.05 + 0.005, 0.1 + 0.005, 0.0])
    assert out["energy_idle_j"].tolist() == pytest.approx([10.0, 10.0, 20.0])
    node0 = out[out.node == 0]["energy_j"].sum()
    assert node0 == pytest.approx(2.0 * 10 + 4.0 * 0.3 + 1.0 * 0.15 + 0.5 * 0.02)


def test_csma_radio_accounting_takes_precedence():
    df = pd.DataFrame({"node": [0], "group": [0], "head_start_s": [0.0], "encode_end_s": [0.1],
                       "tx_start_s": [0.1], "tx_end_s": [0.3], "downlink_start_s": [0.4], "downlink_end_s": [0.5],
                       "radio_tx_j": [0.01], "radio_rx_j": [0.002], "radio_idle_j": [0.03]})
    out = add_energy(df, {0: NodePower(2.0, 6.0, 1.0, 0.5)}, horizon_s=1.0)
    assert out["energy_radio_j"].iloc[0] == pytest.approx(0.042)
