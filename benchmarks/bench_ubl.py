"""UBL throughput: our parser (extraction + shared validation + frames) beside plain lxml.

    python benchmarks/bench_ubl.py [--docs 10000] [--repeat 5]

Generates small Peppol BIS 3 invoices in memory (distinct customers, phones, OGMs, VAT numbers, one
creditor IBAN, two lines each) and prints documents per second for:

* baseline: ``etree.fromstring`` + ad hoc ``root.xpath("string(...)")`` for the 10 fields of
  docs/performance.md 3c (ID, IssueDate, DueDate, currency, customer name, street, city,
  PayableAmount, PaymentID, IBAN);
* the same with precompiled ``etree.XPath`` (the library's best case: ~10 k docs/s per core when the
  issue was written, ~21 k on the faster machine of 2026-12);
* ours: ``UblParser().parse_many`` (hardened parser, every field, lines, VAT, validation, frames;
  fields read with lxml ObjectPath, XPath only as the exact fallback).

The issue's target: ours >= half of the precompiled-XPath figure in the same run (the issue put it
at >= 5,000 docs/s when lxml reached ~10 k).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from lxml import etree

from creditflow.parsers.ubl import NS, UblParser

TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
  xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
  xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">
  <cbc:CustomizationID>urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0</cbc:CustomizationID>
  <cbc:ProfileID>urn:fdc:peppol.eu:2017:poacc:billing:01:1.0</cbc:ProfileID>
  <cbc:ID>INV-{n:06d}</cbc:ID>
  <cbc:IssueDate>2026-03-{day:02d}</cbc:IssueDate>
  <cbc:DueDate>2026-04-{day:02d}</cbc:DueDate>
  <cbc:InvoiceTypeCode>380</cbc:InvoiceTypeCode>
  <cbc:DocumentCurrencyCode>EUR</cbc:DocumentCurrencyCode>
  <cbc:BuyerReference>PO-{n}</cbc:BuyerReference>
  <cac:AccountingSupplierParty>
    <cac:Party>
      <cbc:EndpointID schemeID="0208">0403170701</cbc:EndpointID>
      <cac:PartyName><cbc:Name>Demo Incasso</cbc:Name></cac:PartyName>
      <cac:PostalAddress>
        <cbc:StreetName>Kerkstraat 1</cbc:StreetName>
        <cbc:CityName>Gent</cbc:CityName>
        <cbc:PostalZone>9000</cbc:PostalZone>
        <cac:Country><cbc:IdentificationCode>BE</cbc:IdentificationCode></cac:Country>
      </cac:PostalAddress>
      <cac:PartyTaxScheme>
        <cbc:CompanyID>BE0403170701</cbc:CompanyID>
        <cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme>
      </cac:PartyTaxScheme>
      <cac:PartyLegalEntity><cbc:RegistrationName>Demo Incasso BV</cbc:RegistrationName></cac:PartyLegalEntity>
    </cac:Party>
  </cac:AccountingSupplierParty>
  <cac:AccountingCustomerParty>
    <cac:Party>
      <cbc:EndpointID schemeID="0208">{kbo}</cbc:EndpointID>
      <cac:PartyIdentification><cbc:ID>C{n:05d}</cbc:ID></cac:PartyIdentification>
      <cac:PartyName><cbc:Name>Klant {n} BV</cbc:Name></cac:PartyName>
      <cac:PostalAddress>
        <cbc:StreetName>Stationsstraat {house}</cbc:StreetName>
        <cbc:CityName>Antwerpen</cbc:CityName>
        <cbc:PostalZone>2000</cbc:PostalZone>
        <cac:Country><cbc:IdentificationCode>BE</cbc:IdentificationCode></cac:Country>
      </cac:PostalAddress>
      <cac:PartyTaxScheme>
        <cbc:CompanyID>BE{kbo}</cbc:CompanyID>
        <cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme>
      </cac:PartyTaxScheme>
      <cac:PartyLegalEntity><cbc:RegistrationName>Klant {n} BV</cbc:RegistrationName></cac:PartyLegalEntity>
      <cac:Contact>
        <cbc:Name>Jan Peeters</cbc:Name>
        <cbc:Telephone>{phone}</cbc:Telephone>
        <cbc:ElectronicMail>klant{n}@example.be</cbc:ElectronicMail>
      </cac:Contact>
    </cac:Party>
  </cac:AccountingCustomerParty>
  <cac:PaymentMeans>
    <cbc:PaymentMeansCode name="Credit transfer">30</cbc:PaymentMeansCode>
    <cbc:PaymentID>+++{ogm_a}/{ogm_b}/{ogm_c}+++</cbc:PaymentID>
    <cac:PayeeFinancialAccount>
      <cbc:ID>{iban}</cbc:ID>
      <cbc:Name>Demo Incasso BV</cbc:Name>
      <cac:FinancialInstitutionBranch><cbc:ID>GKCCBEBB</cbc:ID></cac:FinancialInstitutionBranch>
    </cac:PayeeFinancialAccount>
  </cac:PaymentMeans>
  <cac:PaymentTerms><cbc:Note>30 dagen na factuurdatum</cbc:Note></cac:PaymentTerms>
  <cac:TaxTotal>
    <cbc:TaxAmount currencyID="EUR">{tax}</cbc:TaxAmount>
    <cac:TaxSubtotal>
      <cbc:TaxableAmount currencyID="EUR">{net}</cbc:TaxableAmount>
      <cbc:TaxAmount currencyID="EUR">{tax}</cbc:TaxAmount>
      <cac:TaxCategory>
        <cbc:ID>S</cbc:ID>
        <cbc:Percent>21</cbc:Percent>
        <cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme>
      </cac:TaxCategory>
    </cac:TaxSubtotal>
  </cac:TaxTotal>
  <cac:LegalMonetaryTotal>
    <cbc:LineExtensionAmount currencyID="EUR">{net}</cbc:LineExtensionAmount>
    <cbc:TaxExclusiveAmount currencyID="EUR">{net}</cbc:TaxExclusiveAmount>
    <cbc:TaxInclusiveAmount currencyID="EUR">{gross}</cbc:TaxInclusiveAmount>
    <cbc:PayableAmount currencyID="EUR">{gross}</cbc:PayableAmount>
  </cac:LegalMonetaryTotal>
  <cac:InvoiceLine>
    <cbc:ID>1</cbc:ID>
    <cbc:InvoicedQuantity unitCode="HUR">{hours}</cbc:InvoicedQuantity>
    <cbc:LineExtensionAmount currencyID="EUR">{line1}</cbc:LineExtensionAmount>
    <cac:Item>
      <cbc:Name>Consultancy</cbc:Name>
      <cac:ClassifiedTaxCategory>
        <cbc:ID>S</cbc:ID>
        <cbc:Percent>21</cbc:Percent>
        <cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme>
      </cac:ClassifiedTaxCategory>
    </cac:Item>
    <cac:Price><cbc:PriceAmount currencyID="EUR">75.00</cbc:PriceAmount></cac:Price>
  </cac:InvoiceLine>
  <cac:InvoiceLine>
    <cbc:ID>2</cbc:ID>
    <cbc:InvoicedQuantity unitCode="C62">1</cbc:InvoicedQuantity>
    <cbc:LineExtensionAmount currencyID="EUR">{line2}</cbc:LineExtensionAmount>
    <cac:Item>
      <cbc:Name>Travel costs</cbc:Name>
      <cac:ClassifiedTaxCategory>
        <cbc:ID>S</cbc:ID>
        <cbc:Percent>21</cbc:Percent>
        <cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme>
      </cac:ClassifiedTaxCategory>
    </cac:Item>
    <cac:Price><cbc:PriceAmount currencyID="EUR">{line2}</cbc:PriceAmount></cac:Price>
  </cac:InvoiceLine>
</Invoice>
"""


def _cents_text(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def make_invoice(n: int) -> bytes:
    """One small, valid Peppol invoice; every customer-specific value differs with `n`."""
    base = 1_000_000_000 + n * 7919 % 8_999_999_999
    check = base % 97 or 97
    ogm = f"{base:010d}{check:02d}"
    head = 10_000_000 + n
    kbo = f"0{head:08d}"[:8]
    kbo = f"{kbo}{97 - int(kbo) % 97:02d}"
    iban = "BE71096123456769"  # the creditor's own account: the same on every invoice
    hours = 1 + n % 40
    line1, line2 = hours * 7500, 1000 + n % 5000
    net = line1 + line2
    tax = (net * 21 + 50) // 100
    return TEMPLATE.format(
        n=n, day=1 + n % 28, kbo=kbo, house=1 + n % 300,
        phone=f"0470 {n // 10000 % 100:02d} {n // 100 % 100:02d} {n % 100:02d}",
        ogm_a=ogm[:3], ogm_b=ogm[3:7], ogm_c=ogm[7:], iban=iban, hours=hours,
        line1=_cents_text(line1), line2=_cents_text(line2), net=_cents_text(net),
        tax=_cents_text(tax), gross=_cents_text(net + tax),
    ).encode()


FIELDS = (
    "cbc:ID",
    "cbc:IssueDate",
    "cbc:DueDate",
    "cbc:DocumentCurrencyCode",
    "cac:AccountingCustomerParty/cac:Party/cac:PartyLegalEntity/cbc:RegistrationName",
    "cac:AccountingCustomerParty/cac:Party/cac:PostalAddress/cbc:StreetName",
    "cac:AccountingCustomerParty/cac:Party/cac:PostalAddress/cbc:CityName",
    "cac:LegalMonetaryTotal/cbc:PayableAmount",
    "cac:PaymentMeans/cbc:PaymentID",
    "cac:PaymentMeans/cac:PayeeFinancialAccount/cbc:ID",
)


def baseline_adhoc(docs: list[bytes]) -> int:
    count = 0
    for data in docs:
        root = etree.fromstring(data)
        values = [root.xpath(f"string({path})", namespaces=NS) for path in FIELDS]
        count += bool(values[0])
    return count


PRECOMPILED = [etree.XPath(f"string({path})", namespaces=NS) for path in FIELDS]


def baseline_precompiled(docs: list[bytes]) -> int:
    count = 0
    for data in docs:
        root = etree.fromstring(data)
        values = [xpath(root) for xpath in PRECOMPILED]
        count += bool(values[0])
    return count


def ours(docs: list[bytes]) -> int:
    batch = UblParser().parse_many(((f"inv{i}.xml", d) for i, d in enumerate(docs)), source="bench")
    assert not batch.errors, batch.errors[:3]
    return batch.invoices.height


def measure(funcs, docs: list[bytes], repeat: int) -> dict:
    """Runs the contenders in turn, `repeat` rounds, so that load from other processes on the box
    hits all of them alike; keeps every time."""
    times = {func: [] for func in funcs}
    cpu = {func: [] for func in funcs}
    results = {}
    for _ in range(repeat):
        for func in funcs:
            start, start_cpu = time.perf_counter(), time.process_time()
            results[func] = func(docs)
            times[func].append(time.perf_counter() - start)
            cpu[func].append(time.process_time() - start_cpu)
    return {func: (min(t), statistics.median(t), min(cpu[func]), results[func])
            for func, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5,
                        help="rounds; each contender keeps its best (the least disturbed) one")
    args = parser.parse_args()
    docs = [make_invoice(n) for n in range(args.docs)]
    size = sum(map(len, docs)) / len(docs)
    print(f"{len(docs)} documents, {size:,.0f} B average; load average before: "
          + ", ".join(f"{load:.2f}" for load in os.getloadavg()))
    contenders = (
        ("baseline: fromstring + ad hoc root.xpath() x10", baseline_adhoc),
        ("library best: fromstring + precompiled XPath x10", baseline_precompiled),
        ("ours: UblParser.parse_many (all fields + validation)", ours),
    )
    figures = measure([func for _, func in contenders], docs, args.repeat)
    rates, cpu_rates = {}, {}
    print(f"{'':58s} {'wall min':>8s} {'median':>8s} {'docs/s':>8s} {'CPU s':>7s} {'docs/CPU-s':>10s}")
    for label, func in contenders:
        best, median, best_cpu, result = figures[func]
        rates[func], cpu_rates[func] = len(docs) / best, len(docs) / best_cpu
        print(f"{label:58s} {best:8.3f} {median:8.3f} {rates[func]:8,.0f} {best_cpu:7.3f} "
              f"{cpu_rates[func]:10,.0f}  [{result} rows]")
    print(f"ours / library best: wall {rates[ours] / rates[baseline_precompiled]:.2f}, CPU "
          f"{cpu_rates[ours] / cpu_rates[baseline_precompiled]:.2f} (target >= 0.50); "
          f"ours / ad hoc baseline: wall {rates[ours] / rates[baseline_adhoc]:.2f}")
    print("(CPU time is the fairer figure when other processes share the 2 cores.) Load average "
          "after: " + ", ".join(f"{load:.2f}" for load in os.getloadavg()))


if __name__ == "__main__":
    main()
