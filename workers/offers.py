"""A product's offers: the other merchants' offers of the same product, cheapest first.

Reads the offer index (``workers.offer_index``) the matching agent writes: the
product's ``offer_group``, then every other member of that group. Offers from
the product's own merchant are left out (they are its own listing, or a
duplicate of it). Prices arrive normalised by ``normaliser.price`` (a decimal
amount and an ISO 4217 code, whatever the feed wrote: ``1.299,00 EUR``, ``£12``)
and are converted to ``offer_currency`` with the dated exchange-rate table
(``workers.exchange_rates``: ``offer_exchange_rates_file``, by default the ECB's
reference rates shipped in ``catstream/data``). Offers are sorted by the
converted price; those whose currency has no rate (or that have no price) come
last, in their own currency, each with the reason (``unconverted``). The answer
names the table, its date, whether it is stale, and which currencies to add.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError

from catstream.settings import Settings
from workers.exchange_rates import SETTING, ExchangeRates, exchange_rates, missing_rate_reason
from workers.offer_index import offer_index
from workers.search import ProductNotFound, ProductSearch

MAX_OFFERS = 100


def normalised_price(
    price: Any, currency: str | None, settings: Settings, rates: ExchangeRates
) -> tuple[float | None, str | None, float | None]:
    """(amount, ISO currency, amount in ``offer_currency`` or None without a rate)."""
    try:
        amount = Decimal(str(price)).quantize(Decimal("0.01"))
    except (ArithmeticError, ValueError):  # no price, or not a decimal
        return None, currency, None
    if not amount.is_finite() or amount <= 0:
        return None, currency, None
    code = currency.upper() if currency else None
    converted = rates.convert(amount, code, settings.offer_currency.upper()) if code else None
    if converted is None:
        return float(amount), code, None
    return float(amount), code, float(converted.quantize(Decimal("0.01")))


def offer_entry(source: dict[str, Any], settings: Settings, rates: ExchangeRates) -> dict[str, Any]:
    amount, currency, converted = normalised_price(
        source.get("price"), source.get("currency"), settings, rates
    )
    to = settings.offer_currency.upper()
    if converted is not None:
        reason = None
    elif amount is None:
        reason = "the offer has no price"
    else:
        reason = missing_rate_reason(currency, rates, to)
    return {
        "product_id": source.get("product_id"),
        "merchant": source.get("merchant"),
        "title": (source.get("record") or {}).get("title"),
        "price": amount,
        "currency": currency,
        "price_normalised": converted,
        "normalised_currency": to if converted is not None else None,
        "unconverted": reason,
        "url": source.get("url"),
    }


def cheapest_first(offers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(offer: dict[str, Any]) -> tuple[int, float, str]:
        if offer["price_normalised"] is not None:
            return (0, offer["price_normalised"], str(offer["product_id"]))
        if offer["price"] is not None:
            return (1, offer["price"], str(offer["product_id"]))
        return (2, 0.0, str(offer["product_id"]))

    return sorted(offers, key=key)


class ProductOffers:
    def __init__(self, settings: Settings, client: Elasticsearch | None = None) -> None:
        self.settings = settings
        self.search = ProductSearch(settings, client)
        self.index = offer_index(settings)

    def offers(self, product_id: str) -> dict[str, Any]:
        client = self.search.client
        try:
            own = self.search._call(lambda: client.get(index=self.index, id=product_id))
        except NotFoundError:
            raise ProductNotFound(
                f"product {product_id!r} has no offer group yet: check that it reached "
                f"{self.settings.topic('embeddings')} and that the worker runs the match agent "
                "(`catstream worker --agents normalise,infer,match`)"
            ) from None
        source: dict[str, Any] = own["_source"]
        rates = exchange_rates(self.settings)
        group = source.get("offer_group") or product_id
        response = self.search._call(
            lambda: client.search(
                index=self.index,
                query={"bool": {"filter": [{"term": {"offer_group": group}}]}},
                size=MAX_OFFERS,
            )
        )
        merchant = source.get("merchant")
        offers = [
            offer_entry(hit["_source"], self.settings, rates)
            for hit in response["hits"]["hits"]
            if hit["_id"] != product_id
            and (merchant is None or hit["_source"].get("merchant") != merchant)
        ]
        own_entry = offer_entry(source, self.settings, rates)
        missing = sorted(
            {
                str(o["currency"])
                for o in [own_entry, *offers]
                if o["price"] is not None and o["price_normalised"] is None and o["currency"]
            }
        )
        body: dict[str, Any] = {
            "product_id": product_id,
            "offer_group": group,
            "currency": self.settings.offer_currency.upper(),
            "exchange_rates": rates.describe(self.settings),
            "own": own_entry,
            "offers": cheapest_first(offers),
        }
        if missing:
            body["missing_rates"] = missing
            body["configure"] = (
                f"no exchange rate for {', '.join(missing)}: add them to the table "
                f"{SETTING} names ({rates.path})"
            )
        return body

    def close(self) -> None:
        self.search.close()
