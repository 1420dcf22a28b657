from airflow.sdk import DAG, task

with DAG("bash_decorator", schedule=None):
    @task.bash(env={"X": "1"})
    def build_command(name: str) -> str:
        return f"echo hello {name}"

    build_command("leoflow")
