"""`soc2.yml`: which SOC 2 controls the evidence report covers (seed 003)."""

from __future__ import annotations

from wcp360.config.base import Section


class Soc2Security(Section):
    access_controls: bool = True
    multi_factor_auth: bool = True
    encryption_at_rest: bool = True
    encryption_in_transit: bool = True


class Soc2Availability(Section):
    monitoring: bool = True
    alerting: bool = True
    backup_testing: bool = True
    disaster_recovery: bool = True


class Soc2ProcessingIntegrity(Section):
    input_validation: bool = True
    error_handling: bool = True
    data_integrity_checks: bool = True


class Soc2Confidentiality(Section):
    data_classification: bool = True
    access_logging: bool = True
    secure_disposal: bool = True


class Soc2Privacy(Section):
    consent_management: bool = True
    data_minimization: bool = True
    purpose_limitation: bool = True


class Soc2Config(Section):
    security: Soc2Security = Soc2Security()
    availability: Soc2Availability = Soc2Availability()
    processing_integrity: Soc2ProcessingIntegrity = Soc2ProcessingIntegrity()
    confidentiality: Soc2Confidentiality = Soc2Confidentiality()
    privacy: Soc2Privacy = Soc2Privacy()


class Soc2File(Section):
    soc2: Soc2Config = Soc2Config()
