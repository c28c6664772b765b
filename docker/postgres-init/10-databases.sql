-- Runs once, when the postgres volume is empty, as POSTGRES_USER (goldilocks), which owns them.
-- goldilocks (POSTGRES_DB) holds the service's sweep table; MLflow gets its own two databases.
CREATE DATABASE mlflow;        -- tracking backend store: experiments, runs, metrics
CREATE DATABASE mlflow_auth;   -- basic-auth users and permissions
