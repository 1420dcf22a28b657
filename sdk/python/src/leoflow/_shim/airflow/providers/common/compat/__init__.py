"""Part of Airflow's import paths, mapped onto Leoflow."""
