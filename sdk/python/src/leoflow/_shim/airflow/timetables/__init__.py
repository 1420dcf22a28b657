"""`airflow.timetables`: Airflow's built-in timetables (`leoflow.timetables`)."""
