"""The sekmet FHIR server for integration tests: the same launcher ``ivig-check demo`` uses."""

from smart_app.demo_fhir import (EXAMPLES_DIR, BundleLoadError, SekmetServer, SekmetStartError,  # noqa: F401
                                 collection_to_transaction, free_port, load_bundle, load_examples,
                                 run_sekmet)
