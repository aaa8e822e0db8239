#!/usr/bin/env python3
"""Tests of scripts/gen-chart-docs.py on small values files: what it reads from comments, and
that it fails, naming the key, where it cannot type or document a value. scripts/check-chart.sh
runs them (with the tools' Python, which has PyYAML):

    .tools/bin/tools-python scripts/test_gen_chart_docs.py
"""

import importlib.util
import unittest
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "gen_chart_docs", Path(__file__).resolve().parent / "gen-chart-docs.py")
gen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen)

# The config schema as src/config.rs's generator shapes it, cut down to two fields.
CONFIG = gen.normalise_rust({
    "type": "object", "additionalProperties": False, "title": "Config",
    "properties": {
        "cluster": {
            "type": "object", "additionalProperties": False, "description": "Lookups.",
            "properties": {
                "lookupTimeoutMs": {"type": "integer", "format": "uint64", "minimum": 1,
                                    "maximum": 25000, "default": 2000, "description": "Rust doc."},
                "cniMtu": {"type": ["integer", "null"], "minimum": 576, "default": None},
                "failureMode": {"oneOf": [{"type": "string", "const": "deny"},
                                          {"type": "string", "const": "allow"}]},
            },
        },
    },
})

CONFIG_VALUES = """
# -- The policy file.
config:
  cluster:
    # -- Lookup timeout.
    lookupTimeoutMs: 2000
    # cniMtu -- (int) An MTU, unset by default.
    # cniMtu: 1450
    # -- deny or allow.
    failureMode: deny
"""


def build(text):
    lines = text.strip("\n").splitlines()
    values = gen.yaml.safe_load(text)
    builder = gen.Builder(values, gen.parse_comments(lines), CONFIG)
    return builder.build(), builder.rows


class Generator(unittest.TestCase):
    def test_types_come_from_defaults_and_annotations(self):
        schema, rows = build("""
# -- Replicas.
# @schema {minimum: 0}
replicaCount: 2
server:
  # -- Log format.
  # @schema {enum: [json, text], required: true}
  logFormat: json
""" + CONFIG_VALUES)
        self.assertEqual(schema["properties"]["replicaCount"],
                         {"type": "integer", "minimum": 0, "description": "Replicas."})
        server = schema["properties"]["server"]
        self.assertIs(server["additionalProperties"], False)
        self.assertEqual(server["required"], ["logFormat"])
        self.assertEqual(server["properties"]["logFormat"]["enum"], ["json", "text"])
        self.assertIn(("server.logFormat", "string", '`"json"`', "Log format."), rows)

    def test_config_takes_rust_types_and_values_descriptions(self):
        schema, rows = build(CONFIG_VALUES)
        cluster = schema["properties"]["config"]["properties"]["cluster"]
        timeout = cluster["properties"]["lookupTimeoutMs"]
        self.assertEqual(timeout, {"type": "integer", "minimum": 1, "maximum": 25000,
                                   "description": "Lookup timeout."})
        self.assertEqual(cluster["properties"]["cniMtu"]["type"], "integer")
        self.assertEqual(cluster["properties"]["failureMode"]["enum"], ["deny", "allow"])
        self.assertIn(("config.cluster.cniMtu", "int", "unset", "An MTU, unset by default."), rows)

    def test_empty_map_without_annotation_fails_naming_the_key(self):
        with self.assertRaisesRegex(gen.GenError, r"podLabels: an empty map"):
            build("# -- Labels.\npodLabels: {}\n" + CONFIG_VALUES)

    def test_undocumented_key_fails(self):
        with self.assertRaisesRegex(gen.GenError, r"extra\.flag has no `# --` description"):
            build("extra:\n  flag: true\n" + CONFIG_VALUES)

    def test_config_key_unknown_to_the_server_fails(self):
        with self.assertRaisesRegex(gen.GenError, r"config\.cluster\.lookupTimeoutMS is not a field"):
            build(CONFIG_VALUES.replace("lookupTimeoutMs: 2000", "lookupTimeoutMS: 2000"))

    def test_config_field_left_undocumented_fails(self):
        with self.assertRaisesRegex(gen.GenError, r"does not document failureMode"):
            build(CONFIG_VALUES.replace("    # -- deny or allow.\n    failureMode: deny\n", ""))

    def test_reference_to_a_missing_definition_fails(self):
        schema = {"properties": {"a": {"$ref": "#/definitions/nope"}}}
        with self.assertRaisesRegex(gen.GenError, "names no definition"):
            gen.attach_definitions(schema, {"stringMap": {"type": "object"}})

    def test_only_referenced_definitions_are_copied(self):
        schema = {"properties": {"a": {"$ref": "#/definitions/outer"}}}
        definitions = {"outer": {"items": {"$ref": "#/definitions/inner"}},
                       "inner": {"type": "string"}, "unused": {"type": "string"}}
        gen.attach_definitions(schema, definitions)
        self.assertEqual(list(schema["definitions"]), ["outer", "inner"])


if __name__ == "__main__":
    unittest.main()
