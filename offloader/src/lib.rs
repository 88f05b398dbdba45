//! calls-offloader: the job API and the Docker job runner.
