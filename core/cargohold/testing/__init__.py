"""Helpers for testing cargohold and its plugins: the test kit.

Install it with ``pip install 'cargohold[testing]'``; the registry itself
never imports it.

* :mod:`cargohold.testing.plugin`: the pytest plugin (entry point
  ``pytest11: cargohold``) with the ``cargohold_*`` fixtures: in-process
  apps and clients, live servers, a registry client.
* :mod:`cargohold.testing.client`: ``RegistryClient``, pushes and pulls
  generated images over the distribution API (standard library only).
* :mod:`cargohold.testing.storage`: ``StorageDriverSuite``, the one test suite
  every storage driver runs against itself.
* :mod:`cargohold.testing.server`: ``LiveRegistry``, a real ``cargohold serve``
  process on a free loopback port, for black-box and end-to-end tests
  (``tls_ca=`` for one serving HTTPS; ``plugins=`` for plugins installed in
  that process only; ``exception_recorder`` writes what it reports to a file;
  ``broken_storage()`` makes every storage call fail for a while).
* :mod:`cargohold.testing.auth`: bcrypt htpasswd files and Basic headers.
* :mod:`cargohold.testing.tls`: a CA and server certificates made by openssl.
* :mod:`cargohold.testing.nginx`: a real nginx on loopback, from a config file.
* :mod:`cargohold.testing.containerd`: ``Containerd``, a private containerd daemon
  and its ``ctr`` client (mirrors through ``hosts.toml``).
* :mod:`cargohold.testing.notifications`: ``EventReceiver``, a real HTTP
  endpoint on loopback that records the notifications it receives.
* :mod:`cargohold.testing.reporting`: ``ReporterSuite``, the contract every
  error-reporting plugin runs against itself, with ``ReportReceiver``, a real
  HTTP endpoint on loopback standing in for the error service.
* :mod:`cargohold.testing.services`: ``ServiceProcess``, a backend service
  (an object-store emulator) as a real process on a free loopback port that
  can be stopped and restarted; ``find_tool`` locates its executable;
  ``ReferenceRegistry``, the reference registry (Debian's ``docker-registry``)
  as a live service, with its ``garbage-collect``.
"""
