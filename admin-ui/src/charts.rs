//! A small SVG sparkline: the last minutes of one series, scaled to its own maximum.

use leptos::prelude::*;

/// Width and height of the drawing, in SVG units.
const W: f64 = 120.0;
const H: f64 = 32.0;

/// The polyline points of `values` spread over the width, 0 at the bottom.
pub fn points(values: &[f64]) -> String {
    let max = values.iter().copied().fold(0.0, f64::max).max(1e-9);
    let step = if values.len() > 1 {
        W / (values.len() - 1) as f64
    } else {
        0.0
    };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                H - (v / max) * (H - 2.0) - 1.0
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A sparkline of `values`.
#[component]
pub fn Sparkline(#[prop(into)] values: Signal<Vec<f64>>) -> impl IntoView {
    view! {
        <svg class="spark" viewBox=format!("0 0 {W} {H}") preserveAspectRatio="none" aria-hidden="true">
            <polyline points=move || points(&values.get()) />
        </svg>
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn points_span_the_width_and_scale_to_the_maximum() {
        assert_eq!(
            super::points(&[0.0, 2.0, 4.0]),
            "0.0,31.0 60.0,16.0 120.0,1.0"
        );
        assert_eq!(super::points(&[]), "");
        assert_eq!(super::points(&[0.0]), "0.0,31.0");
    }
}
