"""`privacy.yml`: GDPR retention, anonymization, erasure and export (seed 003)."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from wcp360.config.base import Duration, Section


class DataRetention(Section):
    audit_logs: Duration = timedelta(days=7 * 365)
    user_data: Duration = timedelta(days=2 * 365)
    module_data: Duration = timedelta(days=365)
    metrics_data: Duration = timedelta(days=90)


class DataAnonymization(Section):
    enabled: bool = True
    fields_to_anonymize: list[str] = ["ip_address", "user_agent", "email"]


class RightToBeForgotten(Section):
    enabled: bool = True
    automated_deletion: bool = True


class DataExport(Section):
    enabled: bool = True
    formats: list[Literal["json", "csv"]] = ["json", "csv"]
    encryption: bool = True


class PrivacyConfig(Section):
    gdpr_compliance: bool = True
    data_retention: DataRetention = DataRetention()
    data_anonymization: DataAnonymization = DataAnonymization()
    right_to_be_forgotten: RightToBeForgotten = RightToBeForgotten()
    data_export: DataExport = DataExport()


class PrivacyFile(Section):
    privacy: PrivacyConfig = PrivacyConfig()
