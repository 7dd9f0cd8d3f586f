import { Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import { Strategy } from 'passport-http-bearer';
import { ApiKeyService } from './api-key.service';

export interface ApiKeyPrincipal {
  kind: 'api-key';
}

/** `Authorization: Bearer <key>`, as the OpenAI SDKs send it. */
@Injectable()
export class BearerStrategy extends PassportStrategy(Strategy, 'bearer') {
  constructor(private readonly keys: ApiKeyService) {
    super();
  }

  validate(token: string): ApiKeyPrincipal | false {
    return this.keys.verify(token) ? { kind: 'api-key' } : false;
  }
}
