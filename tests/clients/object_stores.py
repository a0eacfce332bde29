"""Independent clients of the object stores the object storage sink writes to: boto3 (PyPI) for
an S3-protocol server, azure-storage-blob (PyPI) for Azure Blob Storage and its emulator.

Usage:
  object_stores.py s3 ENDPOINT ACCESS_KEY SECRET_KEY BUCKET          prints {key: content}
  object_stores.py azure-create CONNECTION_STRING CONTAINER         creates the container
  object_stores.py azure CONNECTION_STRING CONTAINER                prints {name: content}
Content is the object's text, gunzipped when the name ends in `.gz`. Prints one JSON object."""

import gzip
import json
import sys


def text(name, data):
    return (gzip.decompress(data) if name.endswith(".gz") else data).decode()


def s3(endpoint, access_key, secret_key, bucket):
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        region_name="us-east-1", config=Config(s3={"addressing_style": "path"}),
    )
    objects = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for entry in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
            objects[entry["Key"]] = text(entry["Key"], body)
    return objects


def azure_container(connection_string, container):
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(connection_string).get_container_client(container)


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "s3":
        result = s3(*args)
    elif command == "azure-create":
        azure_container(*args).create_container()
        result = {"created": args[1]}
    elif command == "azure":
        container = azure_container(*args)
        result = {blob.name: text(blob.name, container.download_blob(blob.name).readall()) for blob in container.list_blobs()}
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
