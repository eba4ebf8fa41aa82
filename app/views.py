"""Panel ``Viewer`` classes: the two pages of the explorer, laid out around the models.

State lives in :mod:`gplode.app.model` (``param`` classes); this module only turns it into
widgets (``pn.Param``/``from_param``) and HoloViews plots of the returned arrays.
"""

from __future__ import annotations

import asyncio

import holoviews as hv
import numpy as np
import panel as pn
import param
from ase.data import atomic_numbers, chemical_symbols
from ase.data.colors import jmol_colors

from .model import DatasetModel, DecayModel, lm_labels

__all__ = ["DatasetExplorer", "DecayExplorer"]

hv.extension("bokeh", logo=False)

_PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
]


def _hex(symbol: str) -> str:
    r, g, b = (int(255 * c) for c in jmol_colors[atomic_numbers[symbol]])
    return f"#{r:02x}{g:02x}{b:02x}"


def _file_input(on_upload):
    """An upload widget for structure files that ASE reads, calling ``on_upload(event)``."""
    widget = pn.widgets.FileInput(accept=".xyz,.extxyz,.pdb,.cif,.json,.traj,.db,.vasp,.in")
    widget.param.watch(on_upload, "value")
    return widget


def _alert(message: str):
    return pn.pane.Alert(message, alert_type="danger", visible=bool(message), sizing_mode="stretch_width")


class DecayExplorer(pn.viewable.Viewer):
    """Page 1: multipole decay of the LODE coefficients with the separation of two fragments."""

    model = param.ClassSelector(class_=DecayModel)

    def __init__(self, **params):
        params.setdefault("model", DecayModel())
        super().__init__(**params)
        m = self.model
        self._upload = _file_input(self._on_upload)
        system_widgets = pn.Param(
            m,
            parameters=["system", "center_species", "neighbor_species", "s22_name", "file_path"],
            show_name=False,
            widgets={"system": pn.widgets.RadioButtonGroup},
        )
        self._hyper_widgets = pn.Param(
            m,
            parameters=[
                "exponent",
                "smearing",
                "radial_basis",
                "cutoff",
                "max_radial",
                "max_angular",
                "separation_range",
                "separation",
            ],
            show_name=False,
            widgets={
                "exponent": {"type": pn.widgets.FloatSlider, "throttled": True},
                "radial_basis": pn.widgets.RadioButtonGroup,
                "separation_range": {"type": pn.widgets.RangeSlider, "throttled": True},
                "separation": pn.widgets.FloatSlider,
            },
        )
        self._sidebar = pn.Column(
            "### System",
            system_widgets,
            pn.pane.Markdown("Upload two fragments (2 structures):"),
            self._upload,
            "### Hyper-parameters",
            self._hyper_widgets,
            width=320,
        )
        # the separation line is its own DynamicMap: moving the slider does not redraw the curves
        vline = hv.DynamicMap(pn.bind(self._separation_line, m.param.separation))
        self._curves = pn.pane.HoloViews(
            pn.bind(self._curves_with_line, m.param.curves, vline), sizing_mode="stretch_width", min_height=420
        )
        # DynamicMaps: a new separation updates the data of the existing figures (~0.1 s), no re-layout
        heatmap = hv.DynamicMap(pn.bind(self._heatmap_plot, m.param.snapshot))
        structure = hv.DynamicMap(pn.bind(self._structure_plot, m.param.snapshot))
        self._heatmap = pn.pane.HoloViews(heatmap, min_height=300, sizing_mode="stretch_width")
        self._structure = pn.pane.HoloViews(structure, min_height=300, sizing_mode="stretch_width")
        self._slopes = pn.pane.Markdown(
            pn.bind(self._slopes_table, m.param.curves), css_classes=["gplode-slopes"], width=330
        )
        self._readout = pn.pane.Markdown(
            pn.bind(self._snapshot_readout, m.param.snapshot), css_classes=["gplode-snapshot"], width=330
        )
        self._error = pn.bind(_alert, m.param.error)
        self._busy = pn.indicators.LoadingSpinner(value=m.param.busy, size=24)

    def _on_upload(self, event):
        self.model.param.update(file_name=self._upload.filename or "", file_data=event.new, system="file")

    def _curves_with_line(self, curves, vline):
        plot = self._curve_plot(curves)
        if curves is None:
            return plot
        title = plot.opts.get().kwargs.get("title", "")
        return (plot * vline).opts(
            hv.opts.Overlay(
                logx=True, logy=True, responsive=True, height=420, title=title, legend_position="right", show_grid=True
            )
        )

    @staticmethod
    def _separation_line(separation):
        return hv.VLine(float(separation)).opts(color="black", line_width=1, alpha=0.5)

    @staticmethod
    def _curve_plot(curves):
        if curves is None:
            return hv.Curve([]).opts(title="no data (see the message above)", responsive=True, height=420)
        elements = []
        d = curves.distances
        for l in range(curves.norms.shape[1]):
            color = _PALETTE[l % len(_PALETTE)]
            y = curves.norms[:, l]
            ok = y > 0
            elements.append(hv.Curve((d[ok], y[ok]), "d (Å)", "|c_l|", label=f"l={l}").opts(color=color, line_width=2))
            if curves.asymptotic is not None:
                ya = curves.asymptotic[:, l]
                oka = ya > 0
                elements.append(
                    hv.Curve((d[oka], ya[oka]), "d (Å)", "|c_l|", label=f"l={l} series").opts(
                        color=color, line_dash="dashed", line_width=1.5
                    )
                )
            if curves.reference is not None and ok.any():
                anchor_d, anchor_y = d[ok][-1], y[ok][-1]
                ref = anchor_y * 3 * (d / anchor_d) ** curves.reference[l]
                elements.append(
                    hv.Curve((d, ref), "d (Å)", "|c_l|", label=f"slope −(p+{l})").opts(
                        color=color, line_dash="dotted", alpha=0.6, line_width=1
                    )
                )
        title = f"|c_l|(d) = (Σ_nm c²_nlm)^½, p = {curves.exponent:g}"
        if curves.asymptotic is None:
            title += " (p = 0: Gaussian density, no power-law tail)"
        return hv.Overlay(elements).opts(
            hv.opts.Overlay(
                logx=True,
                logy=True,
                responsive=True,
                height=420,
                title=title,
                legend_position="right",
                legend_cols=1,
                show_grid=True,
            )
        )

    @staticmethod
    def _heatmap_plot(snapshot):
        if snapshot is None:  # one NaN cell, not an empty element: BokehJS rejects ragged in-place updates
            return hv.HeatMap([("0,0", 0, np.nan)], kdims=["(l,m)", "n"], vdims=["c_nlm"]).opts(
                responsive=True, height=300, framewise=True, title="no data"
            )
        coeffs = snapshot.coefficients  # ((L+1)², N+1)
        labels = lm_labels(int(round(np.sqrt(coeffs.shape[0]))) - 1)
        data = [(lab, n, coeffs[i, n]) for i, lab in enumerate(labels) for n in range(coeffs.shape[1])]
        vmax = float(np.abs(coeffs).max()) or 1.0
        return hv.HeatMap(data, kdims=["(l,m)", "n"], vdims=["c_nlm"]).opts(
            cmap="RdBu_r",
            clim=(-vmax, vmax),
            cnorm="eq_hist",
            colorbar=True,
            tools=["hover"],
            responsive=True,
            height=300,
            xrotation=90,
            framewise=True,
            title=f"c_nlm at d = {snapshot.separation:.2f} Å (summed over neighbour species)",
        )

    @staticmethod
    def _structure_plot(snapshot):
        if snapshot is None:
            data = {
                "along d (Å)": [np.nan],
                "across (Å)": [np.nan],
                "element": ["X"],
                "fragment": ["A"],
                "color": ["#ffffff"],
                "size": [1.0],
            }
            return hv.Points(data, ["along d (Å)", "across (Å)"], ["element", "fragment", "color", "size"]).opts(
                color="color", size="size", responsive=True, height=300, framewise=True, title="no data"
            )
        axis = snapshot.axis
        perp = np.cross(axis, [0.0, 0.0, 1.0])
        if np.linalg.norm(perp) < 1e-6:
            perp = np.cross(axis, [1.0, 0.0, 0.0])
        perp /= np.linalg.norm(perp)
        x, y = snapshot.positions @ axis, snapshot.positions @ perp
        role = np.where(snapshot.fragment == 0, "A", "B").astype(object)
        role[snapshot.center] = "A (centre)"
        data = {
            "along d (Å)": x,
            "across (Å)": y,
            "element": snapshot.symbols,
            "fragment": role,
            "color": [_hex(s) for s in snapshot.symbols],
            "size": [8 + 4 * np.cbrt(atomic_numbers[s]) for s in snapshot.symbols],
        }
        pts = hv.Points(data, ["along d (Å)", "across (Å)"], ["element", "fragment", "color", "size"]).opts(
            color="color",
            size="size",
            line_color="black",
            tools=["hover"],
            responsive=True,
            height=300,
            ylim=(-0.5 * (np.ptp(x) + 3) + y.mean(), 0.5 * (np.ptp(x) + 3) + y.mean()),
            framewise=True,
            title=f"structure at d = {snapshot.separation:.2f} Å (projection)",
            padding=0.15,
        )
        return pts

    @staticmethod
    def _slopes_table(curves):
        if curves is None:
            return ""
        rows = ["| l | fitted slope | −(p + l) |", "|---|---|---|"]
        for l, s in enumerate(curves.fitted):
            ref = "—" if curves.reference is None else f"{curves.reference[l]:.2f}"
            rows.append(f"| {l} | {s:.3f} | {ref} |")
        note = "Slopes of log |c_l| against log d over the largest third of the separations."
        if curves.reference is None:
            note += " p = 0 is a Gaussian: it decays faster than any power."
        return "\n".join(rows) + "\n\n" + note

    @staticmethod
    def _snapshot_readout(snapshot):
        if snapshot is None:
            return ""
        c = snapshot.coefficients
        norms = [np.sqrt((c[l * l : (l + 1) ** 2] ** 2).sum()) for l in range(int(round(np.sqrt(c.shape[0]))))]
        return f"**At d = {snapshot.separation:.2f} Å:** " + ", ".join(
            f"|c_{l}| = {v:.3e}" for l, v in enumerate(norms)
        )

    def __panel__(self):
        main = pn.Column(
            pn.Row(pn.pane.Markdown("## Multipole decay of LODE coefficients"), self._busy),
            self._error,
            pn.Row(self._curves, pn.Column(self._slopes, self._readout), sizing_mode="stretch_width"),
            pn.Row(self._heatmap, self._structure, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        return pn.Row(self._sidebar, main, sizing_mode="stretch_width")


class DatasetExplorer(pn.viewable.Viewer):
    """Page 2: PCA map of the LODE power spectra of a data set."""

    model = param.ClassSelector(class_=DatasetModel)

    def __init__(self, **params):
        params.setdefault("model", DatasetModel())
        super().__init__(**params)
        m = self.model
        self._upload = _file_input(self._on_upload)
        self._button = pn.widgets.Button(label="Compute LODE invariants", color="primary")
        self._button.on_click(self._on_compute)
        self._progress = pn.indicators.Progress(value=0, max=100, sizing_mode="stretch_width")
        m.param.watch(lambda e: setattr(self._progress, "value", int(round(100 * e.new))), "progress")
        self._sidebar = pn.Column(
            "### Data",
            pn.Param(
                m, parameters=["source", "file_path"], show_name=False, widgets={"source": pn.widgets.RadioButtonGroup}
            ),
            pn.pane.Markdown("Upload (extxyz or any ASE-readable file):"),
            self._upload,
            "### Hyper-parameters",
            pn.Param(
                m,
                parameters=["exponent", "smearing", "radial_basis", "cutoff", "max_radial", "max_angular"],
                show_name=False,
                widgets={"radial_basis": pn.widgets.RadioButtonGroup},
            ),
            self._button,
            self._progress,
            "### Colour",
            pn.Param(m, parameters=["color_by"], show_name=False),
            width=320,
        )
        self._selection = hv.streams.Selection1D()
        self._selection.add_subscriber(self._on_select)
        self._map = pn.pane.HoloViews(
            pn.bind(self._map_plot, m.param.result, m.param.color_by), sizing_mode="stretch_width", min_height=450
        )
        self._features = pn.pane.HoloViews(
            pn.bind(self._feature_plot, m.param.result, m.param.selected), sizing_mode="stretch_width", min_height=320
        )
        self._summary = pn.pane.Markdown(
            pn.bind(self._summary_text, m.param.result, m.param.selected), css_classes=["gplode-dataset-summary"]
        )
        self._error = pn.bind(_alert, m.param.error)

    @staticmethod
    def _summary_text(result, selected):
        if result is None:
            return "No map yet: choose the data and press **Compute LODE invariants**."
        text = f"**{len(result.names)} structures mapped** (PC1 + PC2 explain {100 * result.explained.sum():.0f} %)."
        if selected is not None and selected < len(result.names):
            values = ", ".join(f"{k} = {v[selected]:.4g}" for k, v in result.properties.items())
            text += f" Selected: **{result.names[selected]}** ({values})."
        return text

    def _on_upload(self, event):
        self.model.param.update(file_name=self._upload.filename or "", file_data=event.new, source="file")

    async def _on_compute(self, event=None):
        self._button.disabled = True
        try:
            for _ in self.model.iter_compute():
                await asyncio.sleep(0.01)  # let the page receive the progress between batches
        finally:
            self._button.disabled = False

    def _on_select(self, index):
        self.model.selected = int(index[0]) if index else None

    def _map_plot(self, result, color_by):
        if result is None:
            return hv.Points([]).opts(title="press 'Compute LODE invariants'", responsive=True, height=450)
        values = result.properties.get(color_by, next(iter(result.properties.values())))
        data = {"PC1": result.pca[:, 0], "PC2": result.pca[:, 1], "name": result.names, color_by: values}
        points = hv.Points(data, ["PC1", "PC2"], ["name", color_by]).opts(
            color=color_by,
            cmap="viridis",
            colorbar=True,
            size=9,
            line_color="black",
            line_width=0.3,
            tools=["hover", "tap"],
            nonselection_alpha=0.3,
            responsive=True,
            height=450,
            xlabel=f"PC1 ({100 * result.explained[0]:.0f} %)",
            ylabel=f"PC2 ({100 * result.explained[1]:.0f} %)",
            title=f"PCA of the atom-averaged power spectra, {len(result.names)} structures",
        )
        self._selection.source = points
        return points

    @staticmethod
    def _feature_plot(result, selected):
        if result is None or selected is None or selected >= len(result.names):
            return hv.HeatMap([]).opts(title="tap a point to see its features", responsive=True, height=320)
        norms = result.channel_norms[selected]  # (a, n, l)
        rows = [f"{chemical_symbols[z]} n={n}" for z in result.neighbor_types for n in range(norms.shape[1])]
        flat = norms.reshape(-1, norms.shape[2])
        data = [(f"l={l}", rows[r], flat[r, l]) for r in range(len(rows)) for l in range(flat.shape[1])]
        return hv.HeatMap(data, kdims=["l", "neighbour, n"], vdims=["|c|"]).opts(
            cmap="viridis",
            cnorm="eq_hist",
            colorbar=True,
            tools=["hover"],
            responsive=True,
            height=320,
            title=f"{result.names[selected]}: atom-averaged (Σ_m c²_anlm)^½",
        )

    def __panel__(self):
        main = pn.Column(
            pn.pane.Markdown("## Dataset explorer"),
            self._error,
            self._summary,
            self._map,
            self._features,
            sizing_mode="stretch_width",
        )
        return pn.Row(self._sidebar, main, sizing_mode="stretch_width")
