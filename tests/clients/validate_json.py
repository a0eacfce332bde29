"""Checks JSON documents against a JSON Schema with PyPI's jsonschema, formats included: an
implementation independent of the one a plugin checks its output with.

    validate_json.py SCHEMA_FILE < DOCUMENTS

DOCUMENTS is one JSON array. Prints a JSON array with, for each document, the list of what is wrong
with it (empty when it is valid).
"""

import json
import sys

import jsonschema
# Without it jsonschema skips `date-time` formats silently; imported so that its absence fails.
import rfc3339_validator  # noqa: F401


def main():
    with open(sys.argv[1], encoding="utf-8") as file:
        schema = json.load(file)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    documents = json.load(sys.stdin)
    report = [
        [f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
         for error in validator.iter_errors(document)]
        for document in documents
    ]
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
