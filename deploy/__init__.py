"""Running the pipeline: the local broker and database, and the whole stack behind `make up`."""
