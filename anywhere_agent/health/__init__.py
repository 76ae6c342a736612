"""Node health as typed data and its renderings; never imports boto3, botocore or typer."""
