//! Leoflow's HTTP surface: Airflow 3.2's `/api/v2` and `/ui` routes on the read models, auth,
//! the served Airflow UI, the Lite editor and metrics.
//!
//! Not built yet: the API and UI are their own issue. This crate exists so the workspace has
//! its final shape; its routes will read the tables of `leoflow_projector::rows`.
