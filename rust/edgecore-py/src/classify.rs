//! Python adapters for classification: `BotDetector`, `assign_variant`, `Experiment`.
//!
//! The default bot patterns come from the `crawler-user-agents` package (MIT), read once per
//! process and compiled once; every `BotDetector()` without patterns shares that compiled set.

use std::sync::Arc;

use edgecore_core::classify::{BotDetector, Experiment};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

use crate::errors::{config_error, CoreError};

static DEFAULT: PyOnceLock<(Arc<BotDetector>, Arc<BotDetector>)> = PyOnceLock::new();

/// The patterns of the crawler-user-agents package.
pub(crate) fn default_patterns(py: Python<'_>) -> PyResult<Vec<String>> {
    let module = py.import("crawleruseragents").map_err(|_| {
        config_error("the default bot patterns need the crawler-user-agents package (pip install crawler-user-agents)")
    })?;
    let data = module.getattr("CRAWLER_USER_AGENTS_DATA")?;
    let mut out = Vec::new();
    for entry in data.try_iter()? {
        out.push(entry?.get_item("pattern")?.extract::<String>()?);
    }
    Ok(out)
}

/// The shared compiled default detectors: (empty UA is not a bot, empty UA is a bot).
pub(crate) fn default_detectors(py: Python<'_>) -> PyResult<&(Arc<BotDetector>, Arc<BotDetector>)> {
    DEFAULT.get_or_try_init(py, || {
        let patterns = default_patterns(py)?;
        let (a, b) = py.detach(|| (BotDetector::new(&patterns, false), BotDetector::new(&patterns, true)));
        Ok((Arc::new(a.map_err(CoreError)?), Arc::new(b.map_err(CoreError)?)))
    })
}

/// Detects bots by User-Agent with patterns compiled once into Rust regular expressions.
#[pyclass(frozen, module = "edgecore._core", name = "BotDetector")]
pub struct PyBotDetector {
    pub(crate) inner: Arc<BotDetector>,
}

#[pymethods]
impl PyBotDetector {
    /// `patterns=None` uses the crawler-user-agents list. `empty_is_bot` decides for a missing or
    /// empty User-Agent (real browsers always send one).
    #[new]
    #[pyo3(signature = (patterns=None, *, empty_is_bot=true))]
    fn new(py: Python<'_>, patterns: Option<Vec<String>>, empty_is_bot: bool) -> PyResult<Self> {
        let inner = match patterns {
            None => {
                let (lenient, strict) = default_detectors(py)?;
                if empty_is_bot {
                    strict.clone()
                } else {
                    lenient.clone()
                }
            }
            Some(p) => Arc::new(py.detach(|| BotDetector::new(&p, empty_is_bot)).map_err(CoreError)?),
        };
        Ok(PyBotDetector { inner })
    }

    /// Whether `user_agent` looks like a bot.
    fn is_bot(&self, user_agent: &str) -> bool {
        self.inner.is_bot(user_agent)
    }

    /// The first pattern that matches `user_agent`, or None.
    #[pyo3(name = "match")]
    fn matched(&self, user_agent: &str) -> Option<String> {
        self.inner.matched(user_agent).map(str::to_owned)
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!("BotDetector({} patterns)", self.inner.len())
    }
}

fn weights_of(weights: &Bound<'_, PyDict>) -> PyResult<Vec<(String, f64)>> {
    weights
        .iter()
        .map(|(k, v)| Ok((k.extract::<String>()?, v.extract::<f64>()?)))
        .collect()
}

/// The variant of `experiment` for `unit` (a user id, a cookie…): deterministic across processes
/// and restarts (XXH3-64 of "experiment\x1funit"), weighted, independent across experiments.
#[pyfunction]
pub fn assign_variant(experiment: &str, unit: &str, weights: &Bound<'_, PyDict>) -> PyResult<String> {
    let e = Experiment::new(experiment, &weights_of(weights)?).map_err(CoreError)?;
    Ok(e.assign(unit).to_owned())
}

/// A validated experiment, for assigning many units without re-reading the weights.
#[pyclass(frozen, module = "edgecore._core", name = "Experiment")]
pub struct PyExperiment {
    pub(crate) inner: Experiment,
}

#[pymethods]
impl PyExperiment {
    #[new]
    fn new(name: &str, weights: &Bound<'_, PyDict>) -> PyResult<Self> {
        Ok(PyExperiment {
            inner: Experiment::new(name, &weights_of(weights)?).map_err(CoreError)?,
        })
    }

    /// The variant for `unit`.
    fn assign(&self, unit: &str) -> &str {
        self.inner.assign(unit)
    }

    /// The experiment name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// The variant names, sorted.
    #[getter]
    fn variants(&self) -> Vec<String> {
        self.inner.variants().map(str::to_owned).collect()
    }
}
