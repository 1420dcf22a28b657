//! The read side as the API uses it: the projector's rows and queries
//! (`leoflow_projector::read`) with Airflow's 404s for what is not there, and the one paging
//! helper (count, page, cursors) every list uses.

pub mod dags;
pub mod page;
pub mod runs;
pub mod task_instances;
