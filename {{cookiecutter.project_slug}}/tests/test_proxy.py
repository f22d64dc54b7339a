"""The client's address comes from X-Forwarded-For only when a trusted proxy connected.
Run: {{ cookiecutter.project_slug }}_venv/bin/python -m unittest -v"""

import os
import unittest
from unittest import mock

from {{ cookiecutter.project_slug }}.proxy import client_address, trusted_peer


class TrustedProxies(unittest.TestCase):
    def test_nginx_on_this_machine_is_trusted_by_default(self) -> None:
        with mock.patch.dict(os.environ, clear=True):
            self.assertTrue(trusted_peer("127.0.0.1"))
            self.assertTrue(trusted_peer("::1"))
            # The unix socket: no peer address, and only nginx may connect.
            self.assertTrue(trusted_peer(""))
            self.assertEqual(client_address("127.0.0.1", "198.51.100.7"), "198.51.100.7")

    def test_a_forged_header_from_any_other_peer_is_ignored(self) -> None:
        with mock.patch.dict(os.environ, clear=True):
            self.assertEqual(client_address("10.0.0.9", "198.51.100.7"), "10.0.0.9")

    def test_load_balancers_named_in_forwarded_allow_ips_are_trusted(self) -> None:
        with mock.patch.dict(os.environ, {"FORWARDED_ALLOW_IPS": "10.0.0.10, 10.0.1.0/24"}):
            self.assertEqual(client_address("10.0.0.10", "198.51.100.7"), "198.51.100.7")
            self.assertEqual(client_address("10.0.1.20", "198.51.100.7"), "198.51.100.7")
            self.assertEqual(client_address("127.0.0.1", "198.51.100.7"), "127.0.0.1")
            self.assertFalse(trusted_peer("not an address"))

    def test_without_a_header_the_peer_is_the_client(self) -> None:
        self.assertEqual(client_address("203.0.113.5", None), "203.0.113.5")
        self.assertEqual(client_address(None, None), "unknown")


if __name__ == "__main__":
    unittest.main()
